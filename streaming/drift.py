"""Live error of served forecasts on new actuals, scaled like MASE. Pure.

A day counts once it is complete: the series has a sale on a later day. Its error is
``|actual - yhat| / mase_scale`` (the model's in-sample seasonal-naive error), so that the mean
over days is comparable with the model's validation MASE; their ratio is the drift ratio.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

__all__ = ["Served", "drift_errors"]


@dataclass
class Served:
    """The forecast a series serves now, and what its live error is so far."""

    model_version: int
    points: dict[date, float]
    validation_mase: float | None
    mase_scale: float | None
    evaluated_through: date | None = None
    errors: list[float] = field(default_factory=list)

    @property
    def live_mase(self) -> float | None:
        return sum(self.errors) / len(self.errors) if self.errors else None

    @property
    def drift_ratio(self) -> float | None:
        live = self.live_mase
        if live is None or not self.validation_mase:
            return None
        return live / self.validation_mase


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
        served.errors.append(error)
        served.evaluated_through = day
        day += timedelta(days=1)
    return out
