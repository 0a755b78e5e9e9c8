"""Pure per-series helpers for re-tuning: history, rolling-origin folds, MASE, seasonal naive.

Plain data in, plain data out: no Ray, Optuna storage, MLflow or Kafka here.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrain.errors import RetrainError

__all__ = [
    "YEAR",
    "Fold",
    "History",
    "history_from_daily",
    "mase",
    "mase_scale",
    "recent_price",
    "rolling_folds",
    "seasonal_naive",
]

YEAR = 364  # a year of whole weeks: the same weekday a year earlier


@dataclass(frozen=True)
class History:
    """One series' daily net units, one value per calendar day, missing days as zero.

    ``pool``, when known, is the total of the series' store (all its items) on the same days:
    the top-down family forecasts the store and splits it down by the series' share.
    """

    start: date
    values: np.ndarray
    pool: np.ndarray | None = None
    # The series' unit price over its last weeks (revenue / units), when sales carry revenue:
    # a planned price is read against it.
    price: float | None = None

    @property
    def end(self) -> date:
        return self.start + timedelta(days=len(self.values) - 1)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=k) for k in range(len(self.values))]


def history_from_daily(
    rows: pa.Table, through: date | None = None, pool: pa.Table | None = None
) -> History:
    """``daily_sales`` rows of one series (columns ``day``, ``units``) as a gap-free history;
    ``pool`` (rows of every series of its store) adds the store's daily total."""
    if rows.num_rows == 0:
        raise RetrainError("The series has no daily sales yet; nothing to fit.")
    days = rows.column("day").to_pylist()
    start = min(days)
    end = through or max(days)
    values = _daily(rows, start, end)
    pooled = None if pool is None else _daily(pool, start, end)
    return History(start, values, pooled, recent_price(rows, end))


PRICE_DAYS = 28


def recent_price(rows: pa.Table, end: date) -> float | None:
    """Revenue over units of the last :data:`PRICE_DAYS` days through ``end`` (None without
    revenue, or without units sold)."""
    if "revenue" not in rows.column_names:
        return None
    recent = rows.filter(pc.greater(rows.column("day"), end - timedelta(days=PRICE_DAYS)))
    units = pc.sum(recent.column("units")).as_py() or 0.0
    revenue = pc.sum(recent.column("revenue")).as_py() or 0.0
    return float(revenue) / float(units) if units > 0 and revenue > 0 else None


def _daily(rows: pa.Table, start: date, end: date) -> np.ndarray:
    """The ``units`` of ``rows`` summed per day from ``start`` through ``end``."""
    values = np.zeros((end - start).days + 1)
    offsets = pc.days_between(pa.scalar(start, pa.date32()), rows.column("day")).to_numpy(
        zero_copy_only=False
    )
    inside = (offsets >= 0) & (offsets < len(values))
    units = rows.column("units").to_numpy(zero_copy_only=False).astype(float)
    np.add.at(values, offsets[inside], units[inside])
    return values


@dataclass(frozen=True)
class Fold:
    """Train on ``[0, cutoff)``, validate on ``[cutoff, cutoff + horizon)`` (indices)."""

    cutoff: int
    horizon: int


def rolling_folds(length: int, horizon: int, folds: int, min_train: int) -> list[Fold]:
    """The last ``folds`` windows of ``horizon`` days, oldest first; fewer if history is short."""
    out = []
    for k in range(folds, 0, -1):
        cutoff = length - k * horizon
        if cutoff >= min_train:
            out.append(Fold(cutoff, horizon))
    return out


def seasonal_naive(
    history: Sequence[float] | np.ndarray, horizon: int, season: int = 7
) -> np.ndarray:
    """Repeat the last full season; the fallback that always works."""
    values = np.asarray(history, dtype=float)
    if len(values) == 0:
        return np.zeros(horizon)
    if len(values) < season:
        return np.full(horizon, values.mean())
    last = values[-season:]
    return np.array([last[k % season] for k in range(horizon)])


def mase_scale(train: Sequence[float] | np.ndarray, season: int = 7) -> float:
    """MASE's denominator: the in-sample mean absolute error of the seasonal-naive forecast."""
    train_a = np.asarray(train, dtype=float)
    if len(train_a) <= season:
        return float(np.mean(np.abs(np.diff(train_a)))) if len(train_a) > 1 else 0.0
    return float(np.mean(np.abs(train_a[season:] - train_a[:-season])))


def mase(
    actual: Sequence[float] | np.ndarray,
    forecast: Sequence[float] | np.ndarray,
    train: Sequence[float] | np.ndarray,
    season: int = 7,
) -> float:
    """Mean absolute error scaled by the in-sample seasonal-naive error of ``train``."""
    actual_a, forecast_a = (np.asarray(x, dtype=float) for x in (actual, forecast))
    error = float(np.mean(np.abs(actual_a - forecast_a)))
    scale = mase_scale(train, season)
    if scale == 0.0:
        return error if error == 0.0 else float("inf")
    return error / scale
