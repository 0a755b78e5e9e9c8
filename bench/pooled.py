"""Benchmark: how much better than Prophet's defaults can a forecast of the Kaggle series be?

A reference, not a forecast: the series' share of its store (over the last 364 days) times
the store's *actual* total on each test day, which no forecast has. It is what ``topdown``
would score with a perfect forecast of the store, so it bounds what splitting the store can
reach on a sample of series. Scored beside Prophet's defaults and ``topdown``'s defaults on
the same series and origins as :mod:`bench.accuracy` (ACCURACY.md: relative MAE on days with
sales, pooled per origin, mean over origins).

    python -m bench.pooled [--kaggle-series 30] [--origins 2]
"""

import argparse
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np

from bench.accuracy import _history, _prophet
from bench.datasets import DATA, HORIZON, load, naive_reference
from retrain.kernel.families import TOPDOWN_DEFAULT, Candidate, forecast
from retrain.kernel.prepare import prepare
from retrain.kernel.series import YEAR
from retrain.kernel.tuning import TuneConfig
from retrain.prophet.fit import FitOptions, FitStats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kaggle-series", type=int, default=30)
    parser.add_argument("--origins", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    chosen = load(
        DATA / "kaggle_store_item_demand/train.csv.gz", "kaggle", args.kaggle_series, None
    )
    last = max(s.start + timedelta(days=len(s.values) - 1) for s in chosen)
    names = ("Prophet defaults", "topdown defaults", "actual store total x share")
    scores: dict[str, list[float]] = {name: [] for name in names}
    config = TuneConfig()
    with tempfile.TemporaryDirectory() as tmp:
        options = FitOptions(Path(tmp), "inprocess", 0, FitStats())
        for k in range(args.origins, 0, -1):
            origin = last - timedelta(days=HORIZON * k)
            err = dict.fromkeys(names, 0.0)
            base = 0.0
            for s in chosen:
                assert s.pool is not None
                o = (origin - s.start).days
                actual = s.values[o + 1 : o + 1 + HORIZON]
                counted = actual > 0
                history = _history(s, o)
                assert history.pool is not None
                data, _ = prepare(history, HORIZON, config.calendar)
                share = history.values[-YEAR:].sum() / history.pool[-YEAR:].sum()
                found = {
                    names[0]: _prophet(history.start, history.values, None, Path(tmp))[0],
                    names[1]: forecast(
                        Candidate("topdown", TOPDOWN_DEFAULT),
                        data,
                        len(history.values),
                        HORIZON,
                        options,
                    ),
                    names[2]: share * s.pool[o + 1 : o + 1 + HORIZON],
                }
                for name, yhat in found.items():
                    err[name] += float(np.abs(np.maximum(yhat, 0) - actual)[counted].sum())
                base += float(np.abs(naive_reference(s.values, o) - actual)[counted].sum())
            for name in names:
                scores[name].append(err[name] / base)
    print(f"kaggle: {len(chosen)} series, {args.origins} origins (relative MAE, ACCURACY.md)")
    for name, rel in scores.items():
        gain = np.mean(rel) / np.mean(scores[names[0]]) - 1
        print(
            f"{name:28}"
            + "".join(f"{r:>9.4f}" for r in rel)
            + f"  mean {np.mean(rel):.4f}  vs Prophet defaults {gain:+.1%}"
        )


if __name__ == "__main__":
    main()
