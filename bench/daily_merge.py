"""Benchmark: the memory and time of one micro-batch's ``daily_sales`` merge at N series.

A chain of ``--series`` series (50 to a store) with ``--days`` of history, written as
``shelfcast import`` writes it (one file per store), then one batch with a day for every
series, merged two ways, each in a process of its own (peak RSS is per process):

- ``TableStore.add_daily_once``: the merge Shelfcast runs, its target bounded by the batch's
  days, so files whose days lie outside them are skipped by their statistics;
- the same merge without the day bounds (the baseline: every file of the batch's stores
  is read into the join).

Twice: a new day (the first batch of a day: nothing stored can match), and the same day
again (a later batch of that day, after a compaction put it in the stores' big files: both
rewrite them). Prints wall time and the peak RSS the merge added, and their ratios (Linux).

    python -m bench.daily_merge [--series 10000] [--days 730]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from streaming.schemas import DAILY_SALES
from streaming.tables import TableStore

START = date(2023, 1, 1)
UNBOUNDED = (
    "t.store_id IN ({stores}) AND t.store_id = s.store_id AND t.item_id = s.item_id "
    "AND t.day = s.day"
)


def daily_table(stores: Sequence[str], items: Sequence[str], days: list[date]) -> pa.Table:
    """``daily_sales`` rows: each series (``stores[k]``, ``items[k]``) sold 1 unit a day."""
    n, k = len(stores), len(days)
    return pa.table(
        {
            "store_id": np.repeat(stores, k),
            "item_id": np.repeat(items, k),
            "day": pa.array(days * n, pa.date32()),
            "units": np.ones(n * k),
            "revenue": np.ones(n * k),
            "returns": np.zeros(n * k),
            "event_count": np.ones(n * k, dtype=np.int64),
            "updated_batch_id": np.zeros(n * k, dtype=np.int64),
        }
    ).cast(DAILY_SALES)


def _chain(series: int, days: list[date]) -> pa.Table:
    stores = [f"S{s // 50:05d}" for s in range(series)]
    items = [f"I{s % 50:03d}" for s in range(series)]
    return daily_table(stores, items, days)


def build_chain(root: Path, series: int, days: int) -> None:
    store = TableStore(root)
    store.ensure()
    history = _chain(series, [START + timedelta(days=d) for d in range(days)])
    store.add_daily_once(history, "import", 0)
    store.compact(["daily_sales"])


def peak_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across exec from the
    parent that built the chain)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _child(root: Path, series: int, day: str, bounded: bool) -> dict[str, float]:
    """Merge one day for every series into the table at ``root``; its wall and added RSS."""
    batch = _chain(series, [date.fromisoformat(day)])
    store = TableStore(root)
    before = peak_mb()
    began = time.perf_counter()
    if bounded:
        store.add_daily_once(batch, "bench", 1)
    else:
        stores = ", ".join(f"'{s}'" for s in sorted(set(batch.column("store_id").to_pylist())))
        (
            store.table("daily_sales")
            .merge(batch, UNBOUNDED.format(stores=stores), source_alias="s", target_alias="t")
            .when_matched_update({"units": "t.units + s.units"})
            .when_not_matched_insert_all()
            .execute()
        )
    seconds = time.perf_counter() - began
    added = peak_mb() - before
    return {"seconds": seconds, "mb": added}


def _run(root: Path, work: Path, series: int, day: date, bounded: bool) -> dict[str, float]:
    copy = work / ("bounded" if bounded else "unbounded")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    args = [str(copy), str(series), day.isoformat(), "1" if bounded else "0"]
    return child_result("bench.daily_merge", "--child", *args)


def child_result(module: str, *args: str) -> dict[str, float]:
    """Run ``python -m module args`` in a process of its own (its peak RSS is its own) and
    return the JSON object on its last line of output."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args], check=True, capture_output=True, text=True
    ).stdout
    found: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, series, day, bounded = args.child
        print(json.dumps(_child(Path(root), int(series), day, bounded == "1")))
        return
    with tempfile.TemporaryDirectory(prefix="shelfcast-merge-") as tmp:
        work = Path(tmp)
        root = work / "chain"
        began = time.perf_counter()
        build_chain(root, args.series, args.days)
        print(
            f"{args.series:,} series x {args.days} days in daily_sales "
            f"({time.perf_counter() - began:.1f} s to build, one file a store)"
        )
        day = START + timedelta(days=args.days)
        for case in ("a new day", "the same day again"):
            if case == "the same day again":  # the day stored, compacted into the big files
                store = TableStore(root)
                store.add_daily_once(_chain(args.series, [day]), "day", 1)
                store.compact(["daily_sales"])
            base = _run(root, work, args.series, day, bounded=False)
            ours = _run(root, work, args.series, day, bounded=True)
            print(
                f"{case}: bounded {ours['seconds']:.2f} s, +{ours['mb']:.0f} MB; "
                f"unbounded {base['seconds']:.2f} s, +{base['mb']:.0f} MB; "
                f"bounded/unbounded: time {ours['seconds'] / base['seconds']:.2f}, "
                f"memory {ours['mb'] / max(base['mb'], 1.0):.2f}"
            )


if __name__ == "__main__":
    main()
