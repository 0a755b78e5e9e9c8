"""Benchmark: the selection rules side by side, on the same candidates and test days.

Each series is selected cold twice at each origin with the same seeded study (so the same
candidates are scored on the same folds) and only the rule differs: ``one_se`` (paired
per-fold differences, one standard error, 2 % margin) against ``margin`` (2 % on the mean,
the rule before). Scored as :mod:`bench.accuracy` scores (ACCURACY.md): relative MAE on days
with sales, pooled per origin, mean over origins.

    python -m bench.selection [--kaggle-series 10] [--rossmann-series 10] [--jobs 2]
"""

import argparse
import multiprocessing
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from bench.accuracy import _history
from bench.datasets import DATA, HORIZON, Series, load, naive_reference
from retrain.kernel.fallback import WarmState, retrain_one
from retrain.kernel.tuning import TuneConfig
from retrain.prophet.fit import FitOptions, FitStats

RULES = ("one_se", "margin")


def run_series(job: tuple[Series, list[int]]) -> list[dict[str, Any]]:
    series, origins = job
    warnings.filterwarnings("ignore")
    out = []
    for origin in origins:
        row: dict[str, Any] = {
            "origin": origin,
            "actual": series.values[origin + 1 : origin + 1 + HORIZON],
            "naive": naive_reference(series.values, origin),
        }
        for rule in RULES:
            config = TuneConfig(selection=rule)
            config = replace(config, calendar=replace(config.calendar, country=series.country))
            study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
            with tempfile.TemporaryDirectory() as tmp:
                options = FitOptions(Path(tmp), "inprocess", 0, FitStats())
                fit = retrain_one(
                    _history(series, origin), config, options, study, WarmState(), lambda: None
                )
            row[rule] = np.array([p["yhat"] for p in fit.points])
            row[f"{rule}_family"] = fit.family
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kaggle-series", type=int, default=10)
    parser.add_argument("--rossmann-series", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    sets = []
    if args.kaggle_series > 0:
        path = DATA / "kaggle_store_item_demand/train.csv.gz"
        sets.append(load(path, "kaggle", args.kaggle_series, None))
    if args.rossmann_series > 0:
        path = DATA / "rossmann_dev/train.csv.gz"
        sets.append(load(path, "rossmann", args.rossmann_series, "DE"))
    for chosen in sets:
        jobs = []
        for s in chosen:
            last = len(s.values) - 1
            jobs.append((s, [last - HORIZON * k for k in (2, 1)]))
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            rows = [r for found in pool.map(run_series, jobs) for r in found]
        print(f"\n{chosen[0].dataset}: {len(chosen)} series, 2 origins")
        differ = sum(r["one_se_family"] != r["margin_family"] for r in rows)
        for rule in RULES:
            rel = []
            for k in (0, 1):
                err = base = 0.0
                for r in rows[k::2]:
                    days = r["actual"] > 0
                    err += float(np.abs(r[rule][days] - r["actual"][days]).sum())
                    base += float(np.abs(r["naive"][days] - r["actual"][days]).sum())
                rel.append(err / base)
            print(f"{rule:8} rel. MAE {rel[0]:.4f} {rel[1]:.4f} mean {np.mean(rel):.4f}")
        print(f"chosen family differs on {differ} of {len(rows)} series-origins")


if __name__ == "__main__":
    main()
