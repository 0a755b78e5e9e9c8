"""One series made ready for the families: closures fitted as missing, holidays as Prophet's
frame. Pure: history and calendar config in, :class:`SeriesData` and :class:`Closures` out."""

from datetime import timedelta

import numpy as np
import pandas as pd

from retrain.kernel.calendar import CalendarConfig, Closures, classify, fill_closed, holiday_names
from retrain.kernel.families import SeriesData
from retrain.kernel.series import YEAR, History

__all__ = ["prepare"]


def prepare(
    history: History, horizon: int, calendar: CalendarConfig, fit_days: int = YEAR
) -> tuple[SeriesData, Closures]:
    """The series as the families see it, and its closures (history and the next ``horizon``
    days)."""
    closures = classify(history.start, history.values, horizon, calendar)
    values = np.where(closures.closed, np.nan, history.values.astype(float))
    names = holiday_names(calendar, history.start, history.end + timedelta(days=horizon))
    frame = (
        pd.DataFrame({"holiday": list(names.values()), "ds": pd.to_datetime(list(names))})
        if names
        else None
    )
    filled = fill_closed(history.values, closures.closed)
    pool = None
    if history.pool is not None:
        # A day the whole store sold nothing it was shut: imputed like a series' closure.
        pool = fill_closed(history.pool, history.pool <= 0)
    return SeriesData(history.start, values, filled, frame, fit_days, pool), closures
