"""Benchmark: what a wave's hand-offs wait for when they compact ``forecasts`` and ``drift``.

A wave of ``--waves`` forecasts per series of a ``--series`` chain (``--items`` to a store),
appended over ``--batches`` hand-offs each, in a shuffled order, as a wave finishes its
series; every ``--every`` writes the hand-off compacts what it wrote. The modes, in the same
process, each writing its own copy of the tables:

- ``inline``: ``TableStore.compact`` in the hand-off;
- ``thread``: ``compact_soon`` on the compactor's thread, in the writer's process;
- ``process``: ``compact_soon`` as the service runs it, in a process of its own at a lower
  CPU priority (``streaming.maintain``).

Per mode: each hand-off's write time (p50, p95, max), the wave's wall time, the files left
and the rows (the same in all); with ``--pages``, the reads a console's series page makes of
``forecasts`` and ``drift``, from a process of its own (as the console runs) for 10 people
asking at 0.75 a second each, p50 and p95 over the mode's run.

    python -m bench.compaction [--series 100000] [--items 50] [--batches 200] [--every 50]
        [--modes inline thread process] [--pages]
"""

import argparse
import itertools
import multiprocessing
import random
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from bench.console import chain, drift_rows, forecast_rows
from streaming.compaction import Compactor
from streaming.tables import TableStore

THROUGH = date(2024, 6, 1)
TABLES = ("forecasts", "drift")


def _p50(values: list[float]) -> float:
    return float(np.median(values))


def _p95(values: list[float]) -> float:
    """The sample at 95 % of the way through, rounded down (no interpolation)."""
    return float(np.percentile(values, 95, method="lower"))


def pages(root: str, keys: list[tuple[str, str]], stop: Any, out: Any) -> None:
    """A console's series-page reads of the two tables, from 10 people at 0.75 a second
    each through 2 read threads, until ``stop`` is set; their ms go to ``out``."""
    from shelfcast.console.data import FORECAST_COLUMNS, TableReader

    reader = TableReader(Path(root))
    reads = ThreadPoolExecutor(2)
    took: list[float] = []

    def page(store: str, item: str) -> None:
        reader.series(store, item, "forecasts", FORECAST_COLUMNS)
        reader.series(store, item, "drift")

    def person(n: int) -> None:
        rng = random.Random(n)
        while not stop.wait(rng.expovariate(0.75)):
            began = time.perf_counter()
            reads.submit(page, *rng.choice(keys)).result()
            took.append(1000 * (time.perf_counter() - began))

    people = [threading.Thread(target=person, args=(n,)) for n in range(10)]
    for thread in people:
        thread.start()
    for thread in people:
        thread.join()
    reads.shutdown()
    out.put(took)


def run(root: Path, args: argparse.Namespace, mode: str) -> dict[str, float]:
    """Write the waves; seconds per hand-off and in all, files and rows at the end."""
    store = TableStore(root)
    store.ensure()
    if mode == "thread":
        store.compactor = Compactor(store.maintain_tables)
    stores, items = chain(args.series, args.items)
    rng = np.random.default_rng(0)
    writes, took = 0, []
    reader = None
    if args.pages:
        first = rng.permutation(args.series)[:1]  # a table to read before the pages start
        seed = stores[first], items[first], 0, THROUGH
        store.append_once("forecasts", forecast_rows(*seed), "seed", 0)
        store.append_once("drift", drift_rows(*seed), "seed", 0)
        spawn = multiprocessing.get_context("spawn")
        stop, out = spawn.Event(), spawn.Queue()
        keys = [(str(stores[k]), str(items[k])) for k in range(0, args.series, 7)]
        reader = spawn.Process(target=pages, args=(str(root), keys, stop, out))
        reader.start()
    began = time.perf_counter()
    for wave in range(1, args.waves + 1):
        for part in np.array_split(rng.permutation(args.series), args.batches):
            part = np.sort(part)
            s, i = stores[part], items[part]
            start = time.perf_counter()
            store.append_once("forecasts", forecast_rows(s, i, wave, THROUGH), "h", writes)
            store.append_once("drift", drift_rows(s, i, wave, THROUGH), "h", writes)
            writes += 1
            if writes % args.every == 0:
                if mode == "inline":
                    store.compact(TABLES)
                else:
                    store.compact_soon(TABLES)
            took.append(time.perf_counter() - start)
    wave_s = time.perf_counter() - began
    store.compactor.wait(3600)
    settled = time.perf_counter() - began
    store.compactor.close()
    read: dict[str, float] = {}
    if reader is not None:
        stop.set()
        page_ms = out.get(timeout=120)
        reader.join(30)
        read = {"page p50 ms": _p50(page_ms), "page p95 ms": _p95(page_ms)}
    return read | {
        "p50 ms": 1000 * _p50(took),
        "p95 ms": 1000 * _p95(took),
        "max ms": 1000 * max(took),
        "wave s": wave_s,
        "settled s": settled,
        "files": float(sum(len(store.table(n).file_uris()) for n in TABLES)),
        "rows": float(sum(store.table(n).to_pyarrow_dataset().count_rows() for n in TABLES)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50, help="series a store")
    parser.add_argument("--waves", type=int, default=1)
    parser.add_argument("--batches", type=int, default=200, help="hand-offs a wave")
    parser.add_argument("--every", type=int, default=50, help="compact every N writes")
    parser.add_argument("--modes", nargs="+", default=["inline", "thread", "process"], help=__doc__)
    parser.add_argument("--pages", action="store_true", help="time a console's reads too")
    args = parser.parse_args()
    results = {}
    for mode in args.modes:
        with tempfile.TemporaryDirectory() as tmp:
            results[mode] = run(Path(tmp) / "delta", args, mode)
        print(mode, {k: round(v, 1) for k, v in results[mode].items()}, flush=True)
    assert len({r["rows"] for r in results.values()}) == 1, "the modes wrote different rows"
    for (base_mode, base), (mode, ours) in itertools.combinations(results.items(), 2):
        pages = (
            f", page p95 {ours['page p95 ms'] / base['page p95 ms']:.2f}x"
            if "page p95 ms" in ours
            else ""
        )
        print(
            f"{mode}/{base_mode}: hand-off p50 {ours['p50 ms'] / base['p50 ms']:.2f}x, "
            f"p95 {ours['p95 ms'] / base['p95 ms']:.2f}x, "
            f"max {ours['max ms'] / base['max ms']:.3f}x, "
            f"wave {ours['wave s'] / base['wave s']:.2f}x, "
            f"until compacted {ours['settled s'] / base['settled s']:.2f}x{pages}"
        )


if __name__ == "__main__":
    main()
