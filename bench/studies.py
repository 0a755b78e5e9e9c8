"""Benchmark: what the per-series Optuna studies cost as the series and the waves grow.

The default storage: journal files, ``SHELFCAST_OPTUNA_JOURNAL_SHARDS`` (8) of them. For
``--series`` series, as the tasks do it: a cold wave (each study created, 20 trials, the warm
state saved), then ``--waves`` warm waves (the study loaded, its warm state, serial and trials
read, 3 trials added, the warm state and serial saved). Per wave it prints ms per series in
this process and the journal bytes added per series; then what a new worker process pays once
per shard: opening one study replays its whole shard. The baseline, in the same process, is
the same work at a tenth of the series: how the per-series costs grow with the series.

    python -m bench.studies [--series 10000] [--waves 3]
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

SHARDS = 8
COLD_TRIALS = 20
WARM_TRIALS = 3
WARM = {"changepoint_prior_scale": 0.05}

_FIRST_OPEN = """
import sys, time
from pathlib import Path
from retrain.stores.studies import StudyRef, open_study, warm_state
def rss():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024
ref = StudyRef(Path(sys.argv[1]), int(sys.argv[2]))
before = rss()
began = time.perf_counter()
warm_state(open_study(ref, sys.argv[3], cold=False))
print(time.perf_counter() - began, rss() - before)
"""


def journal_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("studies-*.log"))


def wave(ref: StudyRef, names: list[str], cold: bool) -> float:
    """ms per series of one wave's study work."""
    began = time.perf_counter()
    for name in names:
        study = open_study(ref, name, cold=cold)
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


def first_open(root: Path, name: str) -> tuple[float, float]:
    """Seconds and MB of memory a fresh process takes to open one study (its shard replayed
    whole)."""
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_OPEN, str(root), str(SHARDS), name],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, mb = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), float(mb)


def run(series: int, waves: int) -> tuple[list[tuple[str, float, float]], tuple[float, ...]]:
    """Per wave: (label, ms per series, journal bytes added per series); and the first
    open: (seconds, MB of memory, shard bytes)."""
    names = [study_name(f"S{k // 50:05d}", f"I{k % 50:03d}") for k in range(series)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-studies-") as tmp:
        root = Path(tmp)
        ref = StudyRef(root, SHARDS)
        for number in range(waves + 1):
            before = journal_bytes(root)
            ms = wave(ref, names, cold=number == 0)
            added = (journal_bytes(root) - before) / series
            label = "cold wave" if number == 0 else f"warm wave {number}"
            rows.append((label, ms, added))
            print(
                f"  {series:,} series, {label}: {ms:.2f} ms, +{added:,.0f} B a series", flush=True
            )
        seconds, mb = first_open(root, names[0])
        return rows, (seconds, mb, journal_bytes(root) / SHARDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--waves", type=int, default=3)
    args = parser.parse_args()
    small, large = max(1, args.series // 10), args.series
    base, base_open = run(small, args.waves)
    ours, our_open = run(large, args.waves)
    print(f"\nOptuna journal files ({SHARDS} shards): {small:,} series against {large:,}")
    for (label, b, b_bytes), (_, o, o_bytes) in zip(base, ours, strict=True):
        print(
            f"  {label:12} ms per series {b:7.2f} {o:7.2f} ({o / b:.2f}x); "
            f"bytes per series {b_bytes:7,.0f} {o_bytes:7,.0f}"
        )
    print("  a new process's first study of a shard (the shard replayed whole):")
    for n, (seconds, mb, shard) in ((small, base_open), (large, our_open)):
        print(f"    {n:7,} series: {seconds:.2f} s, +{mb:.0f} MB, shard {shard / 1e6:.1f} MB")
    print(f"  {large:,}/{small:,}: {our_open[0] / base_open[0]:.1f}x the time")


if __name__ == "__main__":
    main()
