"""Synthetic, seeded POS events: seasonality, promotions, slow movers, returns, retries (pure)."""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

__all__ = ["SimulationSpec", "simulate_events"]

_WEEKLY = (0.85, 0.9, 0.95, 1.0, 1.15, 1.35, 1.2)  # Monday..Sunday


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


def simulate_events(spec: SimulationSpec) -> Iterator[dict[str, Any]]:
    """Events day by day (every series each day), deterministic for a given spec."""
    rng = np.random.default_rng(spec.seed)
    n = spec.stores * spec.items
    level = rng.lognormal(mean=2.0, sigma=0.8, size=n)
    slow = rng.random(n) < 0.2  # slow movers: many zero days
    level[slow] = rng.uniform(0.1, 0.8, size=int(slow.sum()))
    price = np.round(rng.uniform(0.5, 30.0, size=n), 2)
    phase = rng.uniform(0, 2 * math.pi, size=n)
    promo_left = np.zeros(n, dtype=int)
    serial = 0
    for offset in range(spec.days):
        day = spec.start + timedelta(days=offset)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        yearly = 1 + 0.25 * np.sin(2 * math.pi * day.timetuple().tm_yday / 365.25 + phase)
        starting = (promo_left == 0) & (rng.random(n) < spec.promo_rate)
        promo_left[starting] = rng.integers(3, 8, size=int(starting.sum()))
        lift = np.where(promo_left > 0, 1.8, 1.0)
        promo_left = np.maximum(promo_left - 1, 0)
        units = rng.poisson(level * _WEEKLY[day.weekday()] * yearly * lift)
        for s in range(n):
            store, item = f"S{s // spec.items + 1:03d}", f"I{s % spec.items + 1:04d}"
            left = int(units[s])
            while left > 0:
                quantity = min(left, int(rng.integers(1, 4)))
                left -= quantity
                serial += 1
                event = _event(serial, store, item, midnight, rng, quantity, float(price[s]))
                yield event
                if rng.random() < spec.retry_rate:
                    yield dict(event)  # a POS retry: same event id
                if rng.random() < spec.return_rate:
                    serial += 1
                    yield _event(serial, store, item, midnight, rng, -1, float(price[s]))


def _event(
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
        "event_id": f"sim-{serial:012d}",
        "store_id": store,
        "item_id": item,
        "sold_at": sold_at.isoformat(),
        "quantity": float(quantity),
        "unit_price": price,
    }
