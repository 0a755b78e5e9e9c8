"""The data samples shipped in ``tests/data``."""

from pathlib import Path

import pandas as pd

__all__ = ["DATA", "KAGGLE_SAMPLE", "real_series"]

DATA = Path(__file__).resolve().parents[1] / "data"
KAGGLE_SAMPLE = DATA / "kaggle_sample.csv.gz"


def real_series() -> list[pd.DataFrame]:
    """Eight store-item series of the shared Kaggle data (2015-11 to 2017-12), as shipped."""
    frame = pd.read_csv(KAGGLE_SAMPLE, parse_dates=["date"])
    return [
        rows[["date", "sales"]].rename(columns={"date": "ds", "sales": "y"}).iloc[:-28]
        for _, rows in frame.groupby(["store", "item"])
    ]
