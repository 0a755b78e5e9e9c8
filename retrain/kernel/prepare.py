"""One series made ready for the families: closures fitted as missing, holidays as Prophet's
frame, plans as regressors. Pure: history, calendar config and plans in, :class:`SeriesData`
and :class:`Closures` out."""

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd

from retrain.kernel.calendar import CalendarConfig, Closures, classify, fill_closed, holiday_names
from retrain.kernel.families import SeriesData
from retrain.kernel.plans import DayPlan
from retrain.kernel.series import YEAR, History

__all__ = ["prepare", "regressor_frame"]


def regressor_frame(plan: DayPlan, shut: np.ndarray, days: int) -> pd.DataFrame:
    """The known-ahead regressors of the per-series families over the first ``days`` days of
    ``plan``: the planned promotion and school holidays, and the days before and after a
    closure (``shut``: shoppers buy ahead of a closed Sunday or holiday, and catch up after
    it)."""
    shut = shut[:days]
    return pd.DataFrame(
        {
            "promo": plan.promo[:days],
            "school_holiday": plan.school_holiday[:days],
            "closed_tomorrow": np.r_[shut[1:], False].astype(float),
            "closed_yesterday": np.r_[False, shut[:-1]].astype(float),
        },
        index=pd.date_range(plan.start, periods=days, freq="D"),
    )


def prepare(
    history: History,
    horizon: int,
    calendar: CalendarConfig,
    fit_days: int = YEAR,
    plan: DayPlan | None = None,
) -> tuple[SeriesData, Closures]:
    """The series as the families see it, and its closures (history and the next ``horizon``
    days). ``plan`` (from the history's first day through the horizon) adds the planned
    closures and the regressors."""
    n = len(history.values)
    # A plan too short for the horizon says nothing ahead: its closures are not used below.
    covered = plan if plan is not None and len(plan) >= n + horizon else None
    declared = covered is not None and covered.declares_closures
    closures = classify(history.start, history.values, horizon, calendar, declared)
    regressors = None
    if covered is not None:
        planned = covered.closed[: n + horizon]
        # A planned closure (or a weekday the store does not open) without sales is closed;
        # a sale on such a day wins over the plan.
        closed = closures.closed | (planned[:n] & (history.values <= 0))
        future = closures.future_closed | planned[n:]
        closures = replace(closures, closed=closed, future_closed=future)
        if covered.known:
            regressors = regressor_frame(covered, np.r_[closed, future], n + horizon)
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
    data = SeriesData(history.start, values, filled, frame, fit_days, pool, regressors)
    return data, closures
