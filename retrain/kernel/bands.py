"""80 % bands as multipliers of a forecast: actual / forecast on validation folds.

A band in ratios widens with the forecast (a promotion day's errors are larger than a
quiet day's). A series' own folds give it ~50-100 ratios, too few for steady 10th and
90th percentiles: on their own they covered 60-68 % of one origin's days in
``bench.accuracy``. So a series' band is shrunk toward its group model's pooled band (every
series' folds, thousands of ratios) in proportion to their counts: partial pooling.
"""

import math
from collections.abc import Sequence

import numpy as np

# The pooled band weighs as much as this many of the series' own fold days.
POOLED_DAYS = 100
# Fewer ratios than this give no band of their own.
MIN_DAYS = 10
LEVELS = (0.1, 0.9)

Band = tuple[float, float]
NO_BAND: Band = (1.0, 1.0)


def fold_ratios(
    actuals: Sequence[np.ndarray], forecasts: Sequence[np.ndarray], counted: Sequence[np.ndarray]
) -> np.ndarray:
    """actual / forecast on the counted days the forecast is above zero (a day that sold
    nothing is a ratio of 0: a slow mover's band reaches down to zero)."""
    parts = []
    for actual, found, days in zip(actuals, forecasts, counted, strict=True):
        level = np.maximum(found[: len(actual)], 0.0)
        kept = days[: len(actual)] & (level > 0)
        parts.append(actual[kept] / level[kept])
    return np.concatenate(parts) if parts else np.zeros(0)


def band_of(ratios: np.ndarray) -> Band:
    """The 10th and 90th percentiles of ``ratios``, at split conformal's finite-sample
    levels (``floor((n + 1) 0.1) / n`` and ``ceil((n + 1) 0.9) / n``: from 50 ratios the plain
    percentiles cover less than 80 % of the next days); :data:`NO_BAND` when too few."""
    n = len(ratios)
    if n < MIN_DAYS:
        return NO_BAND
    low = math.floor((n + 1) * LEVELS[0]) / n
    high = min(1.0, math.ceil((n + 1) * LEVELS[1]) / n)
    lower, upper = np.quantile(ratios, [low, high])
    return float(lower), float(upper)


def pooled_band(ratios: np.ndarray, pooled: Band | None) -> Band:
    """The series' band from its own ``ratios``, shrunk toward the group's ``pooled`` band
    (weight ``n / (n + POOLED_DAYS)`` on its own); its own alone without a group."""
    if pooled is None:
        return band_of(ratios)
    if len(ratios) < MIN_DAYS:
        return pooled
    own = band_of(ratios)
    weight = len(ratios) / (len(ratios) + POOLED_DAYS)
    return (
        weight * own[0] + (1 - weight) * pooled[0],
        weight * own[1] + (1 - weight) * pooled[1],
    )


def apply_band(mean: np.ndarray, band: Band) -> tuple[np.ndarray, np.ndarray]:
    """The band's lower and upper bounds around ``mean`` (a negative mean is a zero level)."""
    level = np.maximum(np.asarray(mean, dtype=float), 0.0)
    return level * band[0], level * band[1]
