"""Benchmark: what the per-series studies cost as the series and the waves grow.

Two stores, the same work, in this process: Optuna's journal files (the storage before,
the baseline) and the study table (``retrain/stores/study_table.py``: a state row and the
newest trials per series, an SQLite file per shard), ``SHARDS`` (8) shards each. For
``--series`` series, as the tasks do it: a cold wave (20 trials, the warm state saved), then
``--waves`` warm waves (the study and its warm state read, 3 trials added, the warm state and
serial saved), and a kept wave (every champion kept, as a series the group model serves: its
warm state read, its serial saved, no trials). Per wave it prints ms per series and the
bytes the store grew by per series; then what a new worker process pays for its first study
of a shard (a journal is replayed whole; the table reads the series' rows).

    python -m bench.studies [--series 10000] [--waves 3] [--stores journal table]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.stores import _trial
from retrain.stores.studies import (
    StudyRef,
    open_study,
    save_warm_state,
    saved_serial,
    study_name,
    warm_state,
)
from retrain.stores.study_table import StudyTable

SHARDS = 8
COLD_TRIALS = 20
WARM_TRIALS = 3
WARM = {"changepoint_prior_scale": 0.05}

_FIRST_OPEN = """
import sys, time
from pathlib import Path
import optuna, sqlalchemy
from retrain.stores.studies import StudyRef, open_study, warm_state
from retrain.stores.study_table import StudyTable
def rss():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024
root, shards, name, kind = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
before = rss()
began = time.perf_counter()
if kind == "journal":
    warm_state(open_study(StudyRef(root, shards), name, cold=False))
else:
    StudyTable(root, shards).open(name, cold=False)
print(time.perf_counter() - began, rss() - before)
"""


def store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("studies-*"))


def table_wave(table: StudyTable, names: list[str], cold: bool, kept: bool = False) -> float:
    """ms per series of one wave's study work on the study table."""
    began = time.perf_counter()
    for name in names:
        series = table.open(name, cold=cold)
        if kept:
            table.save(series, series.serial + 1)
            continue
        count = COLD_TRIALS if cold else WARM_TRIALS
        study = series.study()  # as a series that tunes: its past trials read
        base = len(study.get_trials(deepcopy=False))
        study.add_trials([_trial(base + n) for n in range(count)])
        table.save(series, series.serial + 1, (WARM, None, {"family": "prophet"}))
    return 1000 * (time.perf_counter() - began) / len(names)


def wave(ref: StudyRef, names: list[str], cold: bool, kept: bool = False) -> float:
    """ms per series of one wave's study work on the journal files."""
    began = time.perf_counter()
    for name in names:
        study = open_study(ref, name, cold=cold)
        if kept:
            warm_state(study)
            save_warm_state(study, WARM, None, {"family": "prophet"}, saved_serial(study) + 1)
            continue
        if cold:
            study.add_trials([_trial(n) for n in range(COLD_TRIALS)])
            save_warm_state(study, WARM, None, {"family": "prophet"}, 1)
            continue
        warm_state(study)
        serial = saved_serial(study)
        past = study.get_trials(deepcopy=False)
        study.add_trials([_trial(len(past) + n) for n in range(WARM_TRIALS)])
        save_warm_state(study, WARM, None, {"family": "prophet"}, serial + 1)
    return 1000 * (time.perf_counter() - began) / len(names)


def first_open(root: Path, name: str, kind: str) -> tuple[float, float]:
    """Seconds and MB of memory a fresh process takes to open one study (beyond its imports)."""
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_OPEN, str(root), str(SHARDS), name, kind],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, mb = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), float(mb)


def run(
    kind: str, series: int, waves: int
) -> tuple[list[tuple[str, float, float]], tuple[float, ...]]:
    """Per wave: (label, ms per series, store bytes added per series); and the first open:
    (seconds, MB of memory, bytes a shard)."""
    names = [study_name(f"S{k // 50:05d}", f"I{k % 50:03d}") for k in range(series)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-studies-") as tmp:
        root = Path(tmp)
        ref = StudyRef(root, SHARDS)
        table = StudyTable(root, SHARDS)
        for number in range(waves + 2):
            before = store_bytes(root)
            cold, kept = number == 0, number == waves + 1
            ms = (
                wave(ref, names, cold, kept)
                if kind == "journal"
                else table_wave(table, names, cold, kept)
            )
            added = (store_bytes(root) - before) / series
            label = "cold wave" if cold else "kept wave" if kept else f"warm wave {number}"
            rows.append((label, ms, added))
            print(
                f"  {kind}, {series:,} series, {label}: {ms:.2f} ms, +{added:,.0f} B a series",
                flush=True,
            )
        seconds, mb = first_open(root, names[0], kind)
        return rows, (seconds, mb, store_bytes(root) / SHARDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--stores", nargs="+", default=["journal", "table"])
    args = parser.parse_args()
    small, large = max(1, args.series // 10), args.series
    found = {(kind, n): run(kind, n, args.waves) for kind in args.stores for n in (small, large)}
    for kind in args.stores:
        base, base_open = found[(kind, small)]
        ours, our_open = found[(kind, large)]
        print(f"\n{kind} ({SHARDS} shards): {small:,} series against {large:,}")
        for (label, b, b_bytes), (_, o, o_bytes) in zip(base, ours, strict=True):
            print(
                f"  {label:12} ms per series {b:7.2f} {o:7.2f} ({o / b:.2f}x); "
                f"bytes per series {b_bytes:7,.0f} {o_bytes:7,.0f}"
            )
        print("  a new process's first study of a shard:")
        for n, (seconds, mb, shard) in ((small, base_open), (large, our_open)):
            print(f"    {n:7,} series: {seconds:.3f} s, +{mb:.0f} MB, shard {shard / 1e6:.1f} MB")
    if len(args.stores) == 2:
        before, after = found[(args.stores[0], large)][0], found[(args.stores[1], large)][0]
        print(f"\n{large:,} series, {args.stores[1]} against {args.stores[0]}, same process:")
        for (label, x, x_bytes), (_, y, y_bytes) in zip(before, after, strict=True):
            print(f"  {label:12} {y / x:.2f}x the time, {y_bytes / max(x_bytes, 1):.2f}x the bytes")
        first = found[(args.stores[0], large)][1], found[(args.stores[1], large)][1]
        print(f"  first study of a shard: {first[1][0] / first[0][0]:.3f}x the time")


if __name__ == "__main__":
    main()
