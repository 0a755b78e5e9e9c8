"""Synthetic, seeded POS events: seasonality, promotions, slow movers, returns, retries (pure).

Event ids are ``<id_prefix>-<serial>``: the same spec sends the same ids (a replay is stored
once), and a run that must be stored beside an earlier one (the demo's live phase) takes a
prefix of its own.

Promotions are planned: each series' promotion days follow from the seed, the series and the
calendar day alone, so a run that starts on another day plans the same ones. The simulator
publishes them as ``plan`` v1 messages ``plans_ahead_days`` ahead, and one ``store`` v1 record
per store first (:func:`simulate_messages`).
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from contracts import series_key

__all__ = ["SimulationSpec", "planned_promotions", "simulate_events", "simulate_messages"]

_WEEKLY = (0.85, 0.9, 0.95, 1.0, 1.15, 1.35, 1.2)  # Monday..Sunday
_PROMO_LIFT = 1.8
_PROMO_DEPTH = 0.2  # the planned price cut of a promotion
_PROMO_DAYS = (3, 8)  # a promotion lasts 3-7 days


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate."""

    stores: int = 5
    items: int = 20
    start: date = date(2024, 1, 1)
    days: int = 28
    seed: int = 7
    return_rate: float = 0.02
    retry_rate: float = 0.01
    promo_rate: float = 0.03
    plans_ahead_days: int = 14
    country: str = "DE"
    id_prefix: str = "sim"


def _series(spec: SimulationSpec) -> list[tuple[str, str]]:
    return [
        (f"S{s // spec.items + 1:03d}", f"I{s % spec.items + 1:04d}")
        for s in range(spec.stores * spec.items)
    ]


def planned_promotions(spec: SimulationSpec, until: date) -> list[tuple[int, date, date]]:
    """``(series index, first day, last day)`` of every promotion that starts from
    ``spec.start`` to ``until``, by first day. A series starts one with ``promo_rate`` on a
    day it runs none; what a day holds depends on the seed, the series and that day only."""
    out = []
    busy_until = [date.min] * (spec.stores * spec.items)
    # Promotions that started before ``spec.start`` and still run are found from a week back.
    day = spec.start - timedelta(days=_PROMO_DAYS[1] - 1)
    while day <= until:
        for s in range(len(busy_until)):
            if day <= busy_until[s]:
                continue
            rng = np.random.default_rng([spec.seed, s, day.toordinal()])
            if rng.random() < spec.promo_rate:
                last = day + timedelta(days=int(rng.integers(*_PROMO_DAYS)) - 1)
                busy_until[s] = last
                if last >= spec.start:
                    out.append((s, day, last))
        day += timedelta(days=1)
    return sorted(out, key=lambda p: (p[1], p[0]))


def simulate_events(spec: SimulationSpec) -> Iterator[dict[str, Any]]:
    """Events day by day (every series each day), deterministic for a given spec."""
    for kind, message in _simulate(spec, with_plans=False):
        if kind == "sale":
            yield message


def simulate_messages(
    spec: SimulationSpec, topics: tuple[str, str, str]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(topic, key, value)`` as a POS and its planners send them: each store's record first,
    then day by day the promotions planned ``plans_ahead_days`` ahead and the day's sales.
    ``topics``: sales, plans, stores."""
    sales, plans, stores = topics
    for kind, message in _simulate(spec, with_plans=True):
        if kind == "sale":
            yield sales, series_key(message["store_id"], message["item_id"]), message
        elif kind == "plan":
            yield plans, message["plan_id"], message
        else:
            yield stores, message["store_id"], message


def _simulate(spec: SimulationSpec, with_plans: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    rng = np.random.default_rng(spec.seed)
    series = _series(spec)
    n = len(series)
    level = rng.lognormal(mean=2.0, sigma=0.8, size=n)
    slow = rng.random(n) < 0.2  # slow movers: many zero days
    level[slow] = rng.uniform(0.1, 0.8, size=int(slow.sum()))
    price = np.round(rng.uniform(0.5, 30.0, size=n), 2)
    phase = rng.uniform(0, 2 * math.pi, size=n)
    ahead = timedelta(days=spec.plans_ahead_days)
    last_day = spec.start + timedelta(days=spec.days - 1)
    promotions = planned_promotions(spec, last_day + (ahead if with_plans else timedelta()))
    if with_plans:
        for store in dict.fromkeys(s for s, _ in series):
            yield "store", _store(store, spec)
    promo_days: list[set[date]] = [set() for _ in range(n)]
    for s, first, last in promotions:
        promo_days[s].update(first + timedelta(days=k) for k in range((last - first).days + 1))
    published = 0
    serial = 0
    for offset in range(spec.days):
        day = spec.start + timedelta(days=offset)
        while with_plans and published < len(promotions):
            s, first, last = promotions[published]
            if first > day + ahead:
                break
            yield "plan", _plan(series[s], first, last, spec.plans_ahead_days)
            published += 1
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        yearly = 1 + 0.25 * np.sin(2 * math.pi * day.timetuple().tm_yday / 365.25 + phase)
        on_promo = np.array([day in days for days in promo_days])
        lift = np.where(on_promo, _PROMO_LIFT, 1.0)
        units = rng.poisson(level * _WEEKLY[day.weekday()] * yearly * lift)
        for s, (store, item) in enumerate(series):
            paid = round(float(price[s]) * (1 - _PROMO_DEPTH if on_promo[s] else 1.0), 2)
            left = int(units[s])
            while left > 0:
                quantity = min(left, int(rng.integers(1, 4)))
                left -= quantity
                serial += 1
                event = _event(spec.id_prefix, serial, store, item, midnight, rng, quantity, paid)
                yield "sale", event
                if rng.random() < spec.retry_rate:
                    yield "sale", dict(event)  # a POS retry: same event id
                if rng.random() < spec.return_rate:
                    serial += 1
                    yield (
                        "sale",
                        _event(spec.id_prefix, serial, store, item, midnight, rng, -1, paid),
                    )


def _store(store: str, spec: SimulationSpec) -> dict[str, Any]:
    published = datetime(spec.start.year, spec.start.month, spec.start.day, tzinfo=UTC)
    return {
        "store_id": store,
        "revision": 1,
        "country": spec.country,
        "open_weekdays": [1, 2, 3, 4, 5, 6, 7],  # the simulated stores sell every day
        "store_type": "simulated",
        "published_at": published.isoformat(),
    }


def _plan(key: tuple[str, str], first: date, last: date, ahead_days: int) -> dict[str, Any]:
    store, item = key
    published = datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(
        days=ahead_days
    )
    return {
        "plan_id": f"sim-promo-{store}-{item}-{first:%Y%m%d}",
        "revision": 1,
        "store_id": store,
        "item_id": item,
        "start_date": first.isoformat(),
        "end_date": last.isoformat(),
        "kind": "promotion",
        "depth": _PROMO_DEPTH,
        "published_at": published.isoformat(),
    }


def _event(
    prefix: str,
    serial: int,
    store: str,
    item: str,
    midnight: datetime,
    rng: np.random.Generator,
    quantity: int,
    price: float,
) -> dict[str, Any]:
    sold_at = midnight + timedelta(seconds=int(rng.integers(8 * 3600, 21 * 3600)))
    return {
        "event_id": f"{prefix}-{serial:012d}",
        "store_id": store,
        "item_id": item,
        "sold_at": sold_at.isoformat(),
        "quantity": float(quantity),
        "unit_price": price,
    }
