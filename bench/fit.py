"""Benchmark: Prophet fits per second, cmdstan against the in-process optimiser, same series.

Three ways to fit each of N Kaggle store-item series (the last 730 days, Prophet's default
priors with weekly and yearly seasonality, in each seasonality mode), in this process, one
thread:
  cmdstan       Prophet.fit with its default backend (a cmdstan process per fit)
  in-process    Prophet.fit with retrain.prophet.inprocess.InProcessBackend
  trial refit   a tuning trial: the fold prepared once, only the optimiser re-run
                (retrain.prophet.folds), as the incremental waves use it

    OPENBLAS_NUM_THREADS=1 python -m bench.fit [--series 20]
"""

import os

# One BLAS thread, as in a Ray task; set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.retrain import DATA, choose
from retrain.kernel.series import History, rolling_folds
from retrain.prophet.fast_prophet import Mode
from retrain.prophet.fit import (
    FitOptions,
    FitStats,
    Params,
    fit_prophet,
)
from retrain.prophet.folds import FoldScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    args = parser.parse_args()
    logging.getLogger("cmdstanpy").disabled = True
    frame = choose(pd.read_csv(DATA, parse_dates=["date"]), args.series)
    histories = []
    for _, rows in frame.groupby(["store", "item"]):
        rows = rows.tail(730)
        histories.append(History(rows["date"].iloc[0].date(), rows["sales"].to_numpy(float)))

    modes: list[Mode] = ["additive", "multiplicative"]
    with tempfile.TemporaryDirectory() as tmp:
        seconds: dict[str, dict[str, float]] = {}
        for mode in modes:
            params = Params(seasonality_mode=mode)
            for backend in ("cmdstan", "inprocess"):
                options = FitOptions(Path(tmp), backend, 0, FitStats())
                fit_prophet(histories[0].start, histories[0].values, params, options)  # warm-up
                began = time.perf_counter()
                for h in histories:
                    fit_prophet(h.start, h.values, params, options, intervals=False)
                seconds.setdefault(backend, {})[mode] = (time.perf_counter() - began) / len(
                    histories
                )

        trial_params = [Params(), Params(0.1, 1.0), Params(0.01, 0.1, "multiplicative")]
        fits, began = 0, time.perf_counter()
        for h in histories:
            scorer = FoldScorer(
                h, rolling_folds(len(h.values), 28, 2, 56), FitOptions(Path(tmp), "inprocess")
            )
            for params in trial_params:
                scorer(params)
                fits += 2
        trial = (time.perf_counter() - began) / fits

    print(f"\n{len(histories)} series x 730 days, Prophet's default priors, one thread")
    print(f"  {'ms per fit':<24}{'additive':>16}{'multiplicative':>18}")
    for backend, per_mode in seconds.items():
        cells = [
            f"{per_mode[m] * 1000:.1f} ({seconds['cmdstan'][m] / per_mode[m]:.1f}x)" for m in modes
        ]
        print(f"  {backend:<24}{cells[0]:>16}{cells[1]:>18}")
    base = sum(seconds["cmdstan"].values()) / len(modes)
    mixed = f"{trial * 1000:.1f} ms ({base / trial:.1f}x the mean cmdstan fit)"
    print(f"  {'trial refit (mixed)':<24}{mixed}")
    print(f"(trial refit includes preparing each fold once: {len(trial_params)} trials x 2 folds)")


if __name__ == "__main__":
    main()
