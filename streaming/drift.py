"""Live error of served forecasts on new actuals, scaled like MASE. Pure.

A day counts once it is complete: the series has a sale on a later day. Its error is
``|actual - yhat| / mase_scale`` (the model's in-sample seasonal-naive error), so that the mean
over days is comparable with the model's validation MASE; their ratio is the drift ratio.

A day is scored against the forecast that served it: a version replaced before that day was
complete (a retrain on the day's first sales) still scores it, under its own model version.
The drift ratio is the current version's own.
"""

import math
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta

__all__ = ["Points", "Served", "copied", "drift_errors", "lineage", "outstanding", "succeeded"]


class Points(Mapping[date, float]):
    """A forecast's values by day, kept as one float array from its first day (the driver
    holds one per series: a dict of dates and floats took ~3 KB, this ~0.3 KB)."""

    __slots__ = ("_first", "_values")

    def __init__(self, values: Mapping[date, float] | None = None) -> None:
        values = values or {}
        self._first = min(values).toordinal() if values else 0
        span = max(values).toordinal() - self._first + 1 if values else 0
        self._values = array("d", [math.nan]) * span  # a day missing between two is NaN
        for day, value in values.items():
            self._values[day.toordinal() - self._first] = value

    def __getitem__(self, day: date) -> float:
        offset = day.toordinal() - self._first
        if 0 <= offset < len(self._values) and not math.isnan(self._values[offset]):
            return self._values[offset]
        raise KeyError(day)

    def __iter__(self) -> Iterator[date]:
        for offset, value in enumerate(self._values):
            if not math.isnan(value):
                yield date.fromordinal(self._first + offset)

    def __len__(self) -> int:
        return sum(not math.isnan(v) for v in self._values)

    def __repr__(self) -> str:
        return f"Points({dict(self)!r})"


@dataclass(slots=True)
class Served:
    """The forecast a series serves now, and what its live error is so far (a sum and a
    count: only their mean is ever asked for)."""

    model_version: int
    points: Points
    validation_mase: float | None
    mase_scale: float | None
    evaluated_through: date | None = None
    error_sum: float = 0.0
    error_count: int = 0
    # The versions this one replaced, cut to the days they served and that are not scored
    # yet (see succeeded): a series retrained on every day's sales is always replaced before
    # its first day is complete, so without them no day would ever be scored.
    earlier: "Served | None" = None

    @property
    def live_mase(self) -> float | None:
        return self.error_sum / self.error_count if self.error_count else None

    @property
    def drift_ratio(self) -> float | None:
        live = self.live_mase
        if live is None or not self.validation_mase:
            return None
        return live / self.validation_mase

    def add_error(self, day: date, error: float) -> None:
        self.error_sum += error
        self.error_count += 1
        self.evaluated_through = day


def drift_errors(
    served: Served, actuals: Mapping[date, float], last_sale_day: date
) -> list[tuple[date, float, float, float]]:
    """New ``(day, actual, yhat, scaled_error)`` for complete, not yet evaluated forecast days.

    Updates ``served`` (its evaluated days and errors) as it goes.
    """
    if not served.points:
        return []
    # A series whose history repeats exactly every week has no MASE scale: use plain error.
    scale = served.mase_scale or 1.0
    start = max(
        min(served.points),
        (served.evaluated_through or date.min) + timedelta(days=1),
    )
    out = []
    day = start
    while day < last_sale_day and day in served.points:
        actual = float(actuals.get(day, 0.0))
        yhat = served.points[day]
        error = abs(actual - yhat) / scale
        out.append((day, actual, yhat, error))
        served.add_error(day, error)
        day += timedelta(days=1)
    return out


def outstanding(served: Served | None, before: date) -> Served | None:
    """``served`` and the versions it replaced, each cut to its days before ``before`` that
    are not scored yet; None when no day is left."""
    if served is None:
        return None
    earlier = outstanding(served.earlier, before)
    after = served.evaluated_through or date.min
    days = {day: yhat for day, yhat in served.points.items() if after < day < before}
    if not days:
        return earlier
    return replace(served, points=Points(days), earlier=earlier)


def succeeded(new: Served, old: Served | None) -> Served:
    """``new`` serving from its first day on, after ``old``: the days before it stay ``old``'s
    (and its predecessors') to score, as they served them."""
    return replace(new, earlier=outstanding(old, min(new.points, default=date.max)))


def copied(served: Served) -> Served:
    """A copy of ``served`` and the versions it replaced, to score (scoring changes them)."""
    earlier = None if served.earlier is None else copied(served.earlier)
    return replace(served, earlier=earlier)


def lineage(served: Served) -> list[Served]:
    """``served`` and the versions it replaced, oldest first."""
    chain = []
    at: Served | None = served
    while at is not None:
        chain.append(at)
        at = at.earlier
    return chain[::-1]
