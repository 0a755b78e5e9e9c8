"""Benchmark: the console's reads at N series, with ``forecasts`` and ``drift`` by store (the
tables' layout) against one flat table each (tables created before they were partitioned).

A chain of ``--series`` series, ``--items`` to a store, is written twice, once per layout, as
the service writes it:

- ``series_state``: a row per series;
- ``daily_sales``: ``--days`` of history (one file a store, as ``shelfcast import`` writes);
- ``forecasts``: ``--waves`` waves of a 28-day forecast per series, each wave's rows
  appended over ``--batches`` micro-batches in a shuffled order (the order a wave finishes
  its series), compacted every 50 writes (``SHELFCAST_INGEST_COMPACT_EVERY_BATCHES``);
- ``drift``: a day of live error per series and wave after the first, likewise.

Then the console's data layer (``ConsoleData``, the reads its pages make; no HTTP) is timed on
``--requests`` random series: a series page one at a time, and from ``--clients`` clients at
once, each asking for pages at ``--rate`` a second at random times (bench.scale's load),
through as many reads at a time as the console runs (``SHELFCAST_CONSOLE_WORKERS``), p50 and
p95;
``/series`` searches on the state table; the state table's read; each table's files.
Prints flat/by-store ratios from the same run.

    python -m bench.console [--series 100000] [--items 1000] [--waves 5]
"""

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from bench.daily_merge import daily_table
from shelfcast.console.data import ConsoleData, series_table
from shelfcast.settings import Settings
from streaming.schemas import DRIFT, FORECASTS, SERIES_STATE
from streaming.tables import TableStore

START = date(2024, 1, 1)
HORIZON = 28
COMPACT_EVERY = 50  # the service's default compaction interval, in writes
# name -> (partitioned by store, compaction target bytes: None is the tables' own)
LAYOUTS: dict[str, tuple[bool, int | None]] = {
    "by store": (True, None),
    "by store, 100 MB files": (True, 100 << 20),
    "flat": (False, 100 << 20),
}


def chain(series: int, items: int) -> tuple[np.ndarray, np.ndarray]:
    index = np.arange(series)
    stores = np.char.add("S", np.char.zfill((index // items).astype(str), 5))
    products = np.char.add("I", np.char.zfill((index % items).astype(str), 5))
    return stores, products


def forecast_rows(stores: np.ndarray, items: np.ndarray, wave: int, through: date) -> pa.Table:
    n = len(stores)
    days = pa.array([through + timedelta(days=d + 1) for d in range(HORIZON)] * n, pa.date32())
    yhat = np.random.default_rng(wave).gamma(2.0, 5.0, n * HORIZON)
    return pa.table(
        {
            "store_id": np.repeat(stores, HORIZON),
            "item_id": np.repeat(items, HORIZON),
            "model_version": np.full(n * HORIZON, wave, dtype=np.int64),
            "day": days,
            "yhat": yhat,
            "yhat_lower": yhat * 0.6,
            "yhat_upper": yhat * 1.4,
            "data_through": pa.array([through] * (n * HORIZON), pa.date32()),
            "method": pa.array(["global"] * (n * HORIZON)),
            "validation_mase": np.full(n * HORIZON, 0.8),
            "mase_scale": np.full(n * HORIZON, 3.0),
            "generated_at": pa.array(
                [datetime(2024, 6, 1, tzinfo=UTC) + timedelta(days=wave)] * (n * HORIZON),
                pa.timestamp("us", tz="UTC"),
            ),
        }
    ).cast(FORECASTS)


def drift_rows(stores: np.ndarray, items: np.ndarray, wave: int, day: date) -> pa.Table:
    n = len(stores)
    return pa.table(
        {
            "store_id": stores,
            "item_id": items,
            "model_version": np.full(n, wave - 1, dtype=np.int64),
            "day": pa.array([day] * n, pa.date32()),
            "actual": np.full(n, 10.0),
            "yhat": np.full(n, 9.0),
            "scaled_error": np.full(n, 0.3),
            "recorded_at": pa.array(
                [datetime(2024, 6, 1, tzinfo=UTC) + timedelta(days=wave)] * n,
                pa.timestamp("us", tz="UTC"),
            ),
            "batch_id": np.full(n, wave, dtype=np.int64),
        }
    ).cast(DRIFT)


def state_rows(stores: np.ndarray, items: np.ndarray, waves: int, through: date) -> pa.Table:
    n = len(stores)
    columns: dict[str, Any] = {f.name: pa.nulls(n, f.type) for f in SERIES_STATE}
    columns.update(
        store_id=pa.array(stores),
        item_id=pa.array(items),
        status=pa.array(["done"] * n),
        family=pa.array(["global"] * n),
        model_version=pa.array([str(waves)] * n),
        validation_mase=pa.array(np.full(n, 0.8)),
        total_events=pa.array(np.full(n, 500, dtype=np.int64)),
        last_sale_day=pa.array([through] * n, pa.date32()),
    )
    return pa.table(columns).cast(SERIES_STATE)


def build(root: Path, args: argparse.Namespace, layout: str) -> tuple[float, float]:
    """The chain's tables under ``root/delta`` in one of ``LAYOUTS``; seconds it took, and
    of them compacting."""
    by_store, target = LAYOUTS[layout]
    began = time.perf_counter()
    delta = root / "delta"
    if not by_store:  # created before: ensure() keeps a table that exists as it is
        for name, schema in (("forecasts", FORECASTS), ("drift", DRIFT)):
            DeltaTable.create(str(delta / name), schema)
    store = TableStore(delta)
    store.ensure()
    stores, items = chain(args.series, args.items)
    through = START + timedelta(days=args.days)
    write_deltalake(store.uri("series_state"), state_rows(stores, items, args.waves, through),
                    mode="append")  # fmt: skip
    calendar = [through - timedelta(days=d) for d in range(args.days)]
    daily = daily_table(stores.tolist(), items.tolist(), calendar)
    write_deltalake(store.uri("daily_sales"), daily, mode="append")
    rng = np.random.default_rng(0)
    writes, compacted, compacting_all = 0, 0.0, 0.0
    for wave in range(1, args.waves + 1):
        order = rng.permutation(args.series)
        for part in np.array_split(order, args.batches):
            part = np.sort(part)  # a micro-batch's rows go out in key order, as a wave's do
            s, i = stores[part], items[part]
            store.append_once("forecasts", forecast_rows(s, i, wave, through), "bench", writes)
            if wave > 1:
                store.append_once("drift", drift_rows(s, i, wave, through), "bench", writes)
            writes += 1
            if writes % COMPACT_EVERY == 0:
                compacting = time.perf_counter()
                store.compact(["forecasts", "drift"], target)
                compacted += time.perf_counter() - compacting
        if wave % max(1, args.waves // 6) == 0 or wave == args.waves:
            files = [len(store.table(name).file_uris()) for name in ("forecasts", "drift")]
            print(
                f"  after wave {wave}: forecasts {files[0]:,} files, drift {files[1]:,}; "
                f"{time.perf_counter() - began:.0f} s in all, {compacted:.1f} s compacting"
            )
            compacting_all, compacted = compacting_all + compacted, 0.0
    return time.perf_counter() - began, compacting_all


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _timed(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return (time.perf_counter() - began) * 1000


def measure(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The console's reads on the chain under ``root``, in ms (and the tables' files)."""
    settings = Settings(data_dir=root)
    data = ConsoleData(settings)
    try:
        state_ms = [_timed(data.series_state) for _ in range(3)]
        states = data.series_state()
        stores, items = chain(args.series, args.items)
        rng = random.Random(1)
        keys = [f"{stores[k]}|{items[k]}" for k in rng.sample(range(args.series), args.requests)]
        data.series_detail(keys[0], states)  # the first read opens the tables' handles
        one = [_timed(partial(data.series_detail, k, states)) for k in keys]
        # The baseline: the same pages with delta-rs' own dataset (every file's filter).
        data.reader.pick_files = False
        data.series_detail(keys[0], states)
        delta_rs = [_timed(partial(data.series_detail, k, states)) for k in keys]
        data.reader.pick_files = True
        # The console's read pool: its threads keep their table handles across requests.
        reads = ThreadPoolExecutor(settings.console_workers)
        opening = [
            reads.submit(data.series_detail, keys[0], states)
            for _ in range(settings.console_workers * 4)
        ]
        for future in opening:  # every thread of the pool has its handles
            future.result()

        def client(mine: list[str]) -> list[float]:
            """A person on the console: series pages at ``rate`` a second, at random times."""
            pace = random.Random(mine[0])
            took = []
            for k in mine:
                time.sleep(pace.expovariate(args.rate))
                began = time.perf_counter()
                reads.submit(data.series_detail, k, states).result()
                took.append(1000 * (time.perf_counter() - began))
            return took

        with ThreadPoolExecutor(args.clients) as pool:
            crowd = [
                t
                for ts in pool.map(client, [keys[c :: args.clients] for c in range(args.clients)])
                for t in ts
            ]
        reads.shutdown()
        queries = ["", f"{stores[args.series // 2]}|", str(items[7]), "global", "no such thing"]
        search = [
            _timed(partial(series_table, states, q, 100, 0, data.store_plans))
            for q in queries
            for _ in range(3)
        ]
        files = {
            name: len(DeltaTable(str(settings.delta_dir / name)).file_uris())
            for name in ("forecasts", "drift", "daily_sales", "series_state")
        }
        opened = data.reader.files("forecasts", store_id=str(stores[0]), item_id=str(items[0]))
    finally:
        data.close()
    return {
        "state": statistics.median(state_ms),
        "page_p50": _pct(one, 50),
        "page_p95": _pct(one, 95),
        "delta_rs_p50": _pct(delta_rs, 50),
        "delta_rs_p95": _pct(delta_rs, 95),
        "crowd_p50": _pct(crowd, 50),
        "crowd_p95": _pct(crowd, 95),
        "search_p50": _pct(search, 50),
        "search_p95": _pct(search, 95),
        "files": files,
        "opened": opened[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000, help="series a store")
    parser.add_argument("--waves", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="micro-batches a wave")
    parser.add_argument("--days", type=int, default=120, help="daily_sales history")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument(
        "--rate", type=float, default=0.75, help="series pages a second per client (bench.scale's)"
    )
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temp dir)")
    parser.add_argument("--layouts", nargs="+", default=["by store", "flat"], choices=list(LAYOUTS))
    parser.add_argument("--reuse", action="store_true", help="measure what --keep holds")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="shelfcast-console-"))
    print(
        f"{args.series:,} series ({args.items:,} a store), {args.waves} waves of {HORIZON} days "
        f"over {args.batches} micro-batches each, {args.days} days of sales"
    )
    found = {}
    try:
        for layout in args.layouts:
            root = work / "".join(c if c.isalnum() else "-" for c in layout)
            seconds, compacting = 0.0, float("nan")
            if not (args.reuse and root.exists()):
                shutil.rmtree(root, ignore_errors=True)
                seconds, compacting = build(root, args, layout)
            found[layout] = result = {**measure(root, args), "compacting": compacting}
            print(
                f"{layout}: built in {seconds:.0f} s ({compacting:.0f} compacting); "
                f"series page p50 {result['page_p50']:.0f} p95 {result['page_p95']:.0f} ms "
                f"alone (delta-rs' dataset: p50 {result['delta_rs_p50']:.0f} "
                f"p95 {result['delta_rs_p95']:.0f} ms, "
                f"{result['page_p50'] / result['delta_rs_p50']:.2f}x at p50), "
                f"p50 {result['crowd_p50']:.0f} "
                f"p95 {result['crowd_p95']:.0f} ms from {args.clients} clients at {args.rate}/s; "
                f"/series search p50 {result['search_p50']:.0f} "
                f"p95 {result['search_p95']:.0f} ms; state read {result['state']:.0f} ms; "
                f"files {result['files']}, a series opens "
                f"{result['opened']} of forecasts'"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    ours = found.get("by store")
    for layout, base in found.items():
        if ours is None or layout == "by store":
            continue
        print(
            f"by store / {layout}: series page p95 {ours['page_p95'] / base['page_p95']:.2f} "
            f"alone, {ours['crowd_p95'] / base['crowd_p95']:.2f} from {args.clients} clients; "
            f"compacting {ours['compacting'] / base['compacting']:.2f}"
        )


if __name__ == "__main__":
    main()
