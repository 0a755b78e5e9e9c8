"""Benchmark: how close any forecast can come on the simulated Kaggle series.

The Kaggle data are simulated: a series' daily mean is its store-item level times a weekday,
a month and a year factor, and the day's sales are noise around it. This fits exactly that
multiplicative mean on *all* five years, the test days included (an oracle: no forecast can
know the test days), by alternating least squares on the factors, and scores it as
``bench.accuracy`` scores every method (ACCURACY.md: relative MAE against the weekly seasonal
naive, pooled over the series and the 28 days after each origin, the mean over the origins).
What the oracle still misses is the noise: a floor for every method, Shelfcast's included.

    python -m bench.oracle [--series 30] [--origins 4] [--data-dir ../shared/data]
"""

import argparse
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from bench.datasets import DATA, HORIZON, load, naive_reference, origin_days


def oracle_means(frame: pd.DataFrame, rounds: int = 20) -> pd.Series:
    """The multiplicative mean level(store, item) x weekday x month x year of every row,
    fitted on every row (the rows forecast included)."""
    keys = {
        "level": frame["store"] + "|" + frame["item"],
        "weekday": frame["date"].dt.weekday,
        "month": frame["date"].dt.month,
        "year": frame["date"].dt.year,
    }
    factors = {name: pd.Series(1.0, index=np.unique(k)) for name, k in keys.items()}
    sales = frame["sales"].to_numpy(float)
    for _ in range(rounds):
        for name, key in keys.items():
            rest = np.ones(len(frame))
            for other, other_key in keys.items():
                if other != name:
                    rest *= factors[other].reindex(other_key).to_numpy()
            # The least-squares factor of a group: sum(y * rest) / sum(rest^2).
            grouped = pd.DataFrame({"k": key, "yr": sales * rest, "rr": rest * rest})
            sums = grouped.groupby("k")[["yr", "rr"]].sum()
            factors[name] = sums["yr"] / sums["rr"]
    mean = np.ones(len(frame))
    for name, key in keys.items():
        mean *= factors[name].reindex(key).to_numpy()
    return pd.Series(mean, index=frame.index)


def score(
    path: Path, series: int, origins: int
) -> tuple[dict[date, float], dict[date, float], int]:
    """Relative MAE of the oracle's mean and of its median (the mean rounded to the count
    the noise most often gives, MAE's best point), by origin; and the series scored."""
    frame = pd.read_csv(path, parse_dates=["date"], dtype={"store": str, "item": str})
    frame["mean"] = oracle_means(frame)
    means = frame.set_index([frame["store"] + "|" + frame["item"], "date"])["mean"]
    chosen = load(path, "kaggle", series, None)
    last = max(s.end for s in chosen)
    by_mean: dict[date, float] = {}
    by_median: dict[date, float] = {}
    for day in origin_days(last, origins):
        err_mean = err_median = err_naive = 0.0
        days = pd.date_range(pd.Timestamp(day) + pd.Timedelta(days=1), periods=HORIZON)
        for s in chosen:
            origin = (day - s.start).days
            actual = s.values[origin + 1 : origin + 1 + HORIZON]
            mean = means.loc[s.key].reindex(days).to_numpy(float)
            counted = actual > 0
            naive = naive_reference(s.values, origin)
            err_mean += float(np.abs(mean - actual)[counted].sum())
            # A Poisson-like count's median is about its mean minus a third.
            err_median += float(np.abs(np.round(mean - 1 / 3) - actual)[counted].sum())
            err_naive += float(np.abs(naive - actual)[counted].sum())
        by_mean[day] = err_mean / err_naive
        by_median[day] = err_median / err_naive
    return by_mean, by_median, len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=30, help="bench.accuracy's 30 (0: all)")
    parser.add_argument("--origins", type=int, default=4)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    args = parser.parse_args()
    path = args.data_dir / "kaggle_store_item_demand/train.csv.gz"
    by_mean, by_median, n = score(path, args.series, args.origins)
    print(f"Kaggle, {n} series, {len(by_mean)} origins: the oracle's relative MAE")
    print("(fitted on every day, the test days included: a floor, not a method)")
    print("| origin | oracle mean | oracle median |")
    print("|---|---|---|")
    for day in by_mean:
        print(f"| {day} | {by_mean[day]:.3f} | {by_median[day]:.3f} |")
    mean_all = float(np.mean(list(by_mean.values())))
    median_all = float(np.mean(list(by_median.values())))
    print(f"| mean | {mean_all:.3f} | {median_all:.3f} |")


if __name__ == "__main__":
    main()
