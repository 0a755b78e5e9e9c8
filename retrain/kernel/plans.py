"""What a retailer knows ahead of a day, as plain arrays: holidays, planned closures,
promotions, school holidays and prices, per day of one series.

Pure: plans and store metadata in (as the ``plans`` and ``stores`` tables hold them), numpy
out. Every model reads these arrays, so a plan means the same thing to Prophet's regressors,
ARIMA's exogenous columns and the group model's features.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from retrain.kernel.calendar import CalendarConfig, holiday_names

__all__ = [
    "DayPlan",
    "Plan",
    "StoreInfo",
    "day_plan",
    "distance_features",
    "plans_for",
]

PLAN_KINDS = ("promotion", "closure", "school_holiday", "price")
# How far "days since" and "days to" an event look; farther is "none near".
NEAR_DAYS = 14


@dataclass(frozen=True)
class Plan:
    """One effective plan (the highest revision of its id, not cancelled)."""

    kind: str
    start: date
    end: date  # inclusive
    item_id: str = "*"  # "*": every item of the store
    depth: float | None = None  # promotion: the fraction off
    unit_price: float | None = None  # price: the planned unit price
    plan_id: str = ""


@dataclass(frozen=True)
class StoreInfo:
    """A store's master data (``stores`` table); unknown fields fall back to the settings."""

    store_id: str
    country: str | None = None
    subdivision: str | None = None
    open_weekdays: tuple[int, ...] | None = None  # ISO: 1 = Monday .. 7 = Sunday
    store_type: str | None = None
    assortment: str | None = None

    def calendar(self, default: CalendarConfig) -> CalendarConfig:
        """The holiday calendar of this store: its own country and region when known."""
        if not self.country:
            return default
        return CalendarConfig(
            country=self.country,
            subdivision=self.subdivision,
            closure_min_level=default.closure_min_level,
            closed_weekday_share=default.closed_weekday_share,
            closure_weeks=default.closure_weeks,
        )


def plans_for(plans: Iterable[Plan], item_id: str) -> tuple[Plan, ...]:
    """The plans that touch one item: the store's own (``*``) and the item's."""
    return tuple(p for p in plans if p.item_id in ("*", item_id))


@dataclass(frozen=True)
class DayPlan:
    """Per day from ``start`` (history and horizon alike): what was known ahead."""

    start: date
    holiday: np.ndarray  # 1.0 on a public holiday of the store's region
    closed: np.ndarray  # True: a planned closure or a weekday the store does not open
    promo: np.ndarray  # 1.0 while a promotion runs
    promo_depth: np.ndarray  # its depth (0 without one or when not given)
    school_holiday: np.ndarray  # 1.0 during school holidays
    price: np.ndarray  # the planned unit price, NaN where none is planned
    known: bool = True  # False: no plans at all were given (a series of a store without any)
    weekdays_known: bool = False  # the store's opening weekdays came from master data

    def __len__(self) -> int:
        return len(self.holiday)

    @property
    def declares_closures(self) -> bool:
        """The store publishes its plans and its opening weekdays: they, not a guess from
        its last weeks, say when it is closed ahead (see ``calendar.classify``)."""
        return self.known and self.weekdays_known

    def window(self, first: int, length: int) -> "DayPlan":
        """Days ``[first, first + length)``."""
        cut = slice(first, first + length)
        return DayPlan(
            self.start + timedelta(days=first),
            self.holiday[cut],
            self.closed[cut],
            self.promo[cut],
            self.promo_depth[cut],
            self.school_holiday[cut],
            self.price[cut],
            self.known,
            self.weekdays_known,
        )


def day_plan(
    start: date,
    days: int,
    plans: Sequence[Plan],
    store: StoreInfo | None,
    calendar: CalendarConfig,
) -> DayPlan:
    """The arrays of ``days`` days from ``start`` for one series' plans and store."""
    holiday = np.zeros(days)
    for day in holiday_names(
        store.calendar(calendar) if store else calendar, start, start + timedelta(days - 1)
    ):
        holiday[(day - start).days] = 1.0
    closed = np.zeros(days, dtype=bool)
    weekdays_known = bool(store and store.open_weekdays)
    if store is not None and store.open_weekdays:
        iso = (np.arange(days) + start.isoweekday() - 1) % 7 + 1
        closed |= ~np.isin(iso, list(store.open_weekdays))
    promo, depth, school = np.zeros(days), np.zeros(days), np.zeros(days)
    price = np.full(days, np.nan)
    for plan in plans:
        first = max((plan.start - start).days, 0)
        last = min((plan.end - start).days, days - 1)
        if last < first:
            continue
        span = slice(first, last + 1)
        if plan.kind == "promotion":
            promo[span] = 1.0
            depth[span] = np.maximum(depth[span], plan.depth or 0.0)
        elif plan.kind == "closure":
            closed[span] = True
        elif plan.kind == "school_holiday":
            school[span] = 1.0
        elif plan.kind == "price" and plan.unit_price is not None:
            price[span] = plan.unit_price
    return DayPlan(start, holiday, closed, promo, depth, school, price, bool(plans), weekdays_known)


def _since(flag: np.ndarray, cap: int) -> np.ndarray:
    """Days since the last flagged day (0 on one), capped at ``cap``."""
    out = np.full(len(flag), float(cap))
    last = -1
    for index, on in enumerate(flag):
        if on:
            last = index
        if last >= 0:
            out[index] = min(index - last, cap)
    return out


def distance_features(flag: np.ndarray, name: str, cap: int = NEAR_DAYS) -> dict[str, np.ndarray]:
    """``<name>_since`` and ``<name>_to``: days since the last and to the next flagged day
    (0 on one), capped: shoppers buy ahead of a closure or a holiday and after it."""
    on = np.asarray(flag) > 0
    return {f"{name}_since": _since(on, cap), f"{name}_to": _since(on[::-1], cap)[::-1]}
