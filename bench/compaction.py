"""Benchmark: what a wave's hand-offs wait for when they compact ``forecasts`` and ``drift``.

A wave of ``--waves`` forecasts per series of a ``--series`` chain (``--items`` to a store),
appended over ``--batches`` hand-offs each, in a shuffled order, as a wave finishes its
series; every ``--every`` writes the hand-off compacts what it wrote. Baseline, in the same
process: compaction inline (``TableStore.compact``, the hand-off's before). Then
``compact_soon``: the append-only tables on the compactor's thread. Each mode writes its own
copy of the tables. Per mode: each hand-off's write time (p50, p95, max), the wave's wall
time, the files left, and the rows (the same in both).

    python -m bench.compaction [--series 100000] [--items 50] [--batches 200] [--every 50]
"""

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from bench.console import chain, drift_rows, forecast_rows
from streaming.tables import TableStore

THROUGH = date(2024, 6, 1)
TABLES = ("forecasts", "drift")


def run(root: Path, args: argparse.Namespace, background: bool) -> dict[str, float]:
    """Write the waves; seconds per hand-off and in all, files and rows at the end."""
    store = TableStore(root)
    store.ensure()
    stores, items = chain(args.series, args.items)
    rng = np.random.default_rng(0)
    writes, took = 0, []
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
                if background:
                    store.compact_soon(TABLES)
                else:
                    store.compact(TABLES)
            took.append(time.perf_counter() - start)
    wave_s = time.perf_counter() - began
    store.compactor.wait(3600)
    settled = time.perf_counter() - began
    store.compactor.close()
    took.sort()
    return {
        "p50 ms": 1000 * statistics.median(took),
        "p95 ms": 1000 * took[int(0.95 * (len(took) - 1))],
        "max ms": 1000 * took[-1],
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
    args = parser.parse_args()
    results = {}
    for mode, background in (("inline", False), ("background", True)):
        with tempfile.TemporaryDirectory() as tmp:
            results[mode] = run(Path(tmp) / "delta", args, background)
        print(mode, {k: round(v, 1) for k, v in results[mode].items()}, flush=True)
    base, ours = results["inline"], results["background"]
    assert base["rows"] == ours["rows"], "the modes wrote different rows"
    print(
        f"background/inline: hand-off p95 {ours['p95 ms'] / base['p95 ms']:.3f}x, "
        f"max {ours['max ms'] / base['max ms']:.3f}x, wave {ours['wave s'] / base['wave s']:.3f}x, "
        f"until compacted {ours['settled s'] / base['settled s']:.3f}x"
    )


if __name__ == "__main__":
    main()
