"""Benchmark: what one group model costs to train and to serve as its group grows.

A synthetic chain shaped like the Kaggle data (per-store and per-item levels, a weekly and a
yearly cycle, Poisson noise, some slow movers, some items only weeks old), two years of
daily history, N series in one group. Each size runs in a fresh process, which reports:

- one fit of the untuned reference (600 trees of 63 leaves) on every series' last two years,
  or on the stable sample the row cap allows (``retrain.group.model.MAX_TRAIN_ROWS``): rows
  learned from, core-s and wall-s;
- the prediction of every series' next 28 days from the fitted model (what waves do between
  retrains), core-s per 1,000 series;
- the process's peak RSS (ru_maxrss), against the RSS after the data was built;
- a group retrain's estimated time: (folds + 1) fits, plus the study's trials.

With ``--threads 1,2`` each size also runs with LightGBM on 2 threads (what
``SHELFCAST_RETRAIN_GROUP_CPUS=2`` gives a group retrain), and the fit's wall time is
printed against one thread's.

    python -m bench.group [--series 1000,10000,100000] [--max-rows 5000000] [--threads 1]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date, timedelta

import numpy as np

from retrain.group.features import GroupSeries, series_input
from retrain.group.model import MAX_TRAIN_ROWS, GroupParams, fit_group
from retrain.kernel.calendar import CalendarConfig

DAYS = 730
THROUGH = date(2017, 12, 31)


def chain(n: int, seed: int = 0) -> list[GroupSeries]:
    """``n`` series of 50 items per store (the last store may hold fewer)."""
    rng = np.random.default_rng(seed)
    start = THROUGH - timedelta(days=DAYS - 1)
    t = np.arange(DAYS)
    weekday = (t + start.weekday()) % 7
    weekly = np.array([0.85, 0.9, 0.95, 1.0, 1.1, 1.25, 0.95])[weekday]
    yearly = 1 + 0.25 * np.sin(2 * np.pi * (t - 80) / 365.25)
    stores = max(1, n // 50)
    store_level = rng.lognormal(0, 0.3, stores)
    item_level = rng.lognormal(2.5, 0.8, 50)
    calendar = CalendarConfig()
    out = []
    for k in range(n):
        store, item = k // 50, k % 50
        level = store_level[min(store, stores - 1)] * item_level[item]
        if k % 10 == 3:
            level = rng.uniform(0.2, 1.0)  # a slow mover
        values = rng.poisson(level * weekly * yearly * (1 + t / 3000)).astype(float)
        first = 0 if k % 25 != 7 else DAYS - int(rng.integers(20, 90))  # a new item
        out.append(
            series_input(
                f"S{store}|I{item}",
                f"S{store}",
                f"I{item}",
                start + timedelta(days=first),
                values[first:],
                None,
                None,
                calendar,
                28,
            )
        )
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int, max_rows: int, threads: int = 1) -> dict[str, float]:
    """One size, in this process."""
    series = chain(n)
    data_rss = _rss_mb()
    began, wall = time.process_time(), time.perf_counter()
    model = fit_group(
        series, THROUGH, GroupParams(), False, folds=0, max_rows=max_rows, threads=threads
    )
    fit_cpu, fit_wall = time.process_time() - began, time.perf_counter() - wall
    began = time.process_time()
    found = model.predict(series, THROUGH)
    predict_cpu = time.process_time() - began
    return {
        "series": n,
        "rows": model.rows,
        "fit_core_s": fit_cpu,
        "fit_wall_s": fit_wall,
        "predict_core_s_per_1000": predict_cpu / max(len(found), 1) * 1000,
        "data_rss_mb": data_rss,
        "peak_rss_mb": _rss_mb(),
        "model_mb": len(model.to_bytes()) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="1000,10000,100000")
    parser.add_argument("--max-rows", type=int, default=MAX_TRAIN_ROWS)
    parser.add_argument("--threads", default="1", help="LightGBM threads, e.g. 1,2")
    parser.add_argument("--one", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.max_rows, args.one[1])))
        return
    print(
        f"{'series':>8}{'threads':>8}{'rows':>11}{'fit core-s':>12}{'fit wall-s':>12}"
        f"{'predict core-s/1k':>19}"
        f"{'data RSS MB':>13}{'peak RSS MB':>13}{'model MB':>10}{'retrain est. s':>16}"
    )
    walls: dict[int, float] = {}  # a size's first fit wall time (its first --threads)
    sizes = [int(x) for x in args.series.split(",")]
    for n, threads in ((n, t) for n in sizes for t in (int(x) for x in args.threads.split(","))):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.group",
                "--one",
                str(n),
                str(threads),
                "--max-rows",
                str(args.max_rows),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"{n:>8}  failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        # A retrain: 4 validation folds and the final fit, warm study of 3 trials on 2 folds.
        estimate = row["fit_wall_s"] * (4 + 1 + 3 * 2)
        one = walls.setdefault(n, row["fit_wall_s"])
        print(
            f"{n:>8}{threads:>8}{row['rows']:>11,.0f}{row['fit_core_s']:>12.1f}{row['fit_wall_s']:>12.1f}"
            f"{row['predict_core_s_per_1000']:>19.2f}{row['data_rss_mb']:>13.0f}"
            f"{row['peak_rss_mb']:>13.0f}{row['model_mb']:>10.1f}{estimate:>16.0f}"
            + (f"  fit wall {row['fit_wall_s'] / one:.2f}x one thread's" if threads > 1 else "")
        )


if __name__ == "__main__":
    main()
