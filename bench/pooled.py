"""Benchmark: how much better than Prophet's defaults can a forecast of the Kaggle series be?

A reference, not a candidate: a multiplicative profile pooled over all 500 Kaggle series
(series level over the last year x weekday x month, each estimated from the 730 days before
the origin across every series), which no per-series model can match: it sees the shape
through 500 series' noise, one series sees it through its own. Scored beside Prophet's
defaults on the same series and origins as :mod:`bench.accuracy` (ACCURACY.md: relative MAE
on days with sales, pooled per origin, mean over origins).

    python -m bench.pooled [--kaggle-series 10] [--origins 2]
"""

import argparse
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.accuracy import DATA, HORIZON, _history, _prophet, load, naive_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kaggle-series", type=int, default=10)
    parser.add_argument("--origins", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    path = DATA / "kaggle_store_item_demand/train.csv.gz"
    frame = pd.read_csv(path, parse_dates=["date"])
    chosen = load(path, "kaggle", args.kaggle_series, None)
    last = frame["date"].max()
    scores: dict[str, list[float]] = {"Prophet defaults": [], "pooled profile": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.origins, 0, -1):
            origin = last - timedelta(days=HORIZON * k)
            seen = frame[(frame["date"] <= origin) & (frame["date"] > origin - timedelta(730))]
            year = seen[seen["date"] > origin - timedelta(365)]
            level = year.groupby(["store", "item"])["sales"].mean()
            mean = seen["sales"].mean()
            weekday = seen.groupby(seen["date"].dt.dayofweek)["sales"].mean() / mean
            month = seen.groupby(seen["date"].dt.month)["sales"].mean() / mean
            days = pd.date_range(origin + timedelta(days=1), periods=HORIZON)
            profile = weekday[days.dayofweek].to_numpy() * month[days.month].to_numpy()
            err = dict.fromkeys(scores, 0.0)
            base = 0.0
            for s in chosen:
                store, item = (int(p) for p in s.key.split("|"))
                o = (origin.date() - s.start).days
                actual = s.values[o + 1 : o + 1 + HORIZON]
                counted = actual > 0
                history = _history(s, o)
                prophet = _prophet(history.start, history.values, None, Path(tmp))[0]
                pooled = level[(store, item)] * profile
                for name, yhat in (("Prophet defaults", prophet), ("pooled profile", pooled)):
                    err[name] += float(np.abs(np.maximum(yhat, 0) - actual)[counted].sum())
                base += float(np.abs(naive_reference(s.values, o) - actual)[counted].sum())
            for name in scores:
                scores[name].append(err[name] / base)
    print(f"kaggle: {len(chosen)} series, {args.origins} origins (relative MAE, ACCURACY.md)")
    for name, rel in scores.items():
        print(f"{name:18}" + "".join(f"{r:>9.4f}" for r in rel) + f"  mean {np.mean(rel):.4f}")
    gain = np.mean(scores["pooled profile"]) / np.mean(scores["Prophet defaults"]) - 1
    print(f"pooled profile vs Prophet defaults: {gain:+.1%}")


if __name__ == "__main__":
    main()
