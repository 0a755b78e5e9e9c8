"""The group model's inputs as mlforecast frames: one row per series and day.

Pure: series, their plans and their closures in, pandas frames out. mlforecast computes the
lags, rolling statistics, calendar columns and the target transform from ``y``; what it
cannot know is built here: the days around holidays, closures and promotions (all known
ahead), and which days count. Closed days stay in the frame with weight 0 rather than as
missing rows: mlforecast's lags are positions, not dates, so a gap would shift every lag
behind it. Their ``y`` is what the lags read there (see :func:`lag_source`), never NaN: one
NaN turns every later rolling mean of the series NaN in coreforecast.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from retrain.kernel.calendar import CalendarConfig, classify
from retrain.kernel.families import GroupView
from retrain.kernel.plans import DayPlan, Plan, StoreInfo, day_plan, distance_features, plans_for

__all__ = [
    "PLAN_LOOKAHEAD",
    "STATICS",
    "GroupSeries",
    "exog_columns",
    "future_frame",
    "group_view",
    "history_frame",
    "lag_source",
    "prediction_frame",
    "series_input",
]

# Days after the horizon whose plans count: "days to the next promotion" looks this far.
PLAN_LOOKAHEAD = 30

# Weeks before a closure whose same-weekday sales stand in for its days (see lag_source).
LAG_FILL_WEEKS = 8

# Categorical columns that stay constant per series (mlforecast's static features).
STATICS = ("store", "item", "store_type", "assortment")


@dataclass(frozen=True)
class GroupSeries:
    """One series as the group model sees it.

    ``values`` and ``closed`` run from ``start`` through the group's last day; ``plan`` runs
    from ``start`` through the last day plus the horizon (what was planned ahead).
    """

    key: str
    store_id: str
    item_id: str
    start: date
    values: np.ndarray
    closed: np.ndarray  # per history day: a closure, not a day without demand
    plan: DayPlan
    future_closed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    statics: dict[str, str] = field(default_factory=dict)
    price: float | None = None  # the series' recent unit price, for the planned price ratio

    @property
    def end(self) -> date:
        return self.start + timedelta(days=len(self.values) - 1)

    def shut(self) -> np.ndarray:
        """Closed days over the plan's span: planned, and inferred from the history."""
        out = self.plan.closed.copy()
        out[: len(self.closed)] |= self.closed
        ahead = slice(len(self.closed), len(self.closed) + len(self.future_closed))
        out[ahead] |= self.future_closed[: len(out[ahead])]
        return out

    def static_values(self) -> dict[str, str]:
        return {
            "store": self.store_id,
            "item": self.item_id,
            "store_type": self.statics.get("store_type", ""),
            "assortment": self.statics.get("assortment", ""),
        }


def exog_columns(
    plan: DayPlan, closed: np.ndarray, use_plans: bool, price: float | None = None
) -> dict[str, np.ndarray]:
    """The known-ahead columns of one series over the days of ``plan`` (``closed`` the same
    length: planned and inferred closures)."""
    holiday = plan.holiday
    out: dict[str, np.ndarray] = {
        "holiday": holiday,
        # Shoppers buy ahead of a holiday and a closure, and catch up after them.
        "holiday_before": np.r_[holiday[1:], 0.0],
        "holiday_after": np.r_[0.0, holiday[:-1]],
        **distance_features(holiday, "holiday"),
        "closed_tomorrow": np.r_[closed[1:], False].astype(float),
        "closed_yesterday": np.r_[False, closed[:-1]].astype(float),
    }
    if use_plans:
        out["promo"] = plan.promo
        out["promo_depth"] = plan.promo_depth
        out.update(distance_features(plan.promo, "promo", cap=30))
        # The day of a running promotion: its first days sell most.
        run = np.zeros(len(plan.promo))
        for index, on in enumerate(plan.promo > 0):
            run[index] = (run[index - 1] + 1 if index else 1) if on else 0
        out["promo_day"] = run
        out["school_holiday"] = plan.school_holiday
        out.update(distance_features(plan.school_holiday, "school_holiday"))
        # Always a column (NaN where no price is planned or known): every frame of a model
        # must have the same columns.
        out["price_ratio"] = plan.price / price if price else np.full(len(plan.price), np.nan)
    return out


def lag_source(values: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """``values`` as the lags read them: a closed day holds the mean of what the series sold
    on its weekday in the :data:`LAG_FILL_WEEKS` weeks before its closure began, over the
    days it was open then (zero if none was: a weekly rest day stays zero).

    A closure is not a collapse of demand. Read as zeros, a store shut for months forecasts
    nothing for weeks after it reopens, because every lag of 28-91 days reads the closure;
    a public holiday reads as a dead day four weeks later. The rows keep weight 0, so what
    is filled in here only ever feeds a lag, never a target.
    """
    out = np.where(closed, 0.0, values).astype(float)
    shut = np.flatnonzero(closed)
    if not len(shut):
        return out
    # The first day of the closure each closed day belongs to.
    starts = shut[np.r_[True, np.diff(shut) > 1]]
    began = starts[np.searchsorted(starts, shut, side="right") - 1]
    # Whole weeks back from the day to the last same weekday before its closure began.
    back = (shut - began) // 7 + 1
    total = np.zeros(len(shut))
    count = np.zeros(len(shut))
    for week in range(LAG_FILL_WEEKS):
        at = shut - 7 * (back + week)
        seen = at >= 0
        seen[seen] = ~closed[at[seen]]
        total[seen] += values[at[seen]]
        count[seen] += 1
    out[shut] = np.divide(total, count, out=np.zeros(len(shut)), where=count > 0)
    return out


def _categorical(frame: pd.DataFrame, categories: dict[str, list[str]] | None) -> pd.DataFrame:
    for name in STATICS:
        values = frame[name].astype(str)
        known = categories.get(name) if categories else None
        frame[name] = pd.Categorical(values, categories=known or sorted(values.unique()))
    return frame


def history_frame(
    series: Sequence[GroupSeries],
    through: date,
    days: int,
    use_plans: bool,
    categories: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Training (or prediction history) rows: the last ``days`` days through ``through`` of
    every series, with ``y``, weight ``w`` (0 on closed days) and the known-ahead columns."""
    parts = []
    for one in series:
        last = (through - one.start).days
        if last < 0:
            continue
        first = max(0, last - days + 1)
        n = last - first + 1
        closed = one.shut()
        exog = exog_columns(one.plan, closed, use_plans, one.price)
        # Over the whole history: a closure that began before the window reads its past.
        lags = lag_source(one.values[: last + 1], closed[: last + 1])
        frame = {
            "unique_id": one.key,
            "ds": pd.date_range(one.start + timedelta(days=first), periods=n, freq="D"),
            "y": lags[first:],
            "w": (~closed[first : last + 1]).astype(float),
            **{name: values[first : last + 1] for name, values in exog.items()},
        }
        parts.append(pd.DataFrame({**frame, **one.static_values()}))
    if not parts:
        raise ValueError(f"no series has a day on or before {through}")
    return _categorical(pd.concat(parts, ignore_index=True), categories)


def future_frame(
    series: Sequence[GroupSeries], through: date, horizon: int, use_plans: bool
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The known-ahead columns of the ``horizon`` days after ``through`` (mlforecast's
    ``X_df``), and each series' closed days in them (forecast zero)."""
    parts, shut = [], {}
    for one in series:
        first = (through - one.start).days + 1
        closed = one.shut()
        if first < 0 or first + horizon > len(one.plan):
            raise ValueError(f"{one.key}: the plan arrays end before the horizon after {through}")
        exog = exog_columns(one.plan, closed, use_plans, one.price)
        shut[one.key] = closed[first : first + horizon]
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": one.key,
                    "ds": pd.date_range(through + timedelta(days=1), periods=horizon, freq="D"),
                    **{name: values[first : first + horizon] for name, values in exog.items()},
                }
            )
        )
    return pd.concat(parts, ignore_index=True), shut


def prediction_frame(
    series: Sequence[GroupSeries],
    through: date,
    days: int,
    horizon: int,
    use_plans: bool,
    categories: dict[str, list[str]] | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The last ``days`` days through ``through`` of every series, then its ``horizon`` days
    ahead (their ``y`` unknown: zero with weight 0), sorted by series and day; and each
    series' closed days ahead (forecast zero)."""
    recent = history_frame(series, through, days, use_plans)
    ahead, shut = future_frame(series, through, horizon, use_plans)
    statics = pd.DataFrame([{"unique_id": one.key, **one.static_values()} for one in series])
    ahead = ahead.merge(statics, on="unique_id", how="left").assign(y=0.0, w=0.0)
    recent[list(STATICS)] = recent[list(STATICS)].astype(str)
    frame = pd.concat([recent, ahead[recent.columns]], ignore_index=True)
    frame = frame.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
    return _categorical(frame, categories), shut


def series_input(
    key: str,
    store_id: str,
    item_id: str,
    start: date,
    values: np.ndarray,
    plans: Sequence[Plan] | None,
    store: StoreInfo | None,
    calendar: CalendarConfig,
    horizon: int,
    statics: dict[str, str] | None = None,
    price: float | None = None,
) -> GroupSeries:
    """One series' daily values (absent days zero) with its closures and what its store
    planned (``plans`` None: plans are not used at all; store metadata still is)."""
    days = len(values) + horizon + PLAN_LOOKAHEAD
    plan = day_plan(start, days, plans_for(plans or (), item_id), store, calendar)
    own = store.calendar(calendar) if store else calendar
    closures = classify(start, values, horizon, own, plan.declares_closures)
    if store is not None:
        statics = {
            "store_type": store.store_type or "",
            "assortment": store.assortment or "",
            **(statics or {}),
        }
    return GroupSeries(
        key,
        store_id,
        item_id,
        start,
        values,
        closures.closed,
        plan,
        closures.future_closed,
        statics or {},
        price,
    )


def group_view(
    forecast: np.ndarray,
    cutoffs: Sequence[date],
    folds: np.ndarray | None,
    version: str,
    band: tuple[float, float],
    history_start: date,
) -> GroupView:
    """What the per-series selection needs of the group model, with the fold cutoffs as
    indices into a history that starts on ``history_start``."""
    if folds is None:
        return GroupView(forecast, (), np.zeros((0, len(forecast))), version, band)
    starts = tuple((cutoff - history_start).days + 1 for cutoff in cutoffs)
    return GroupView(forecast, starts, folds, version, band)
