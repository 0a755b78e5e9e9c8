"""A synthetic chain shaped like the Kaggle data, at any size (pure, seeded, vectorized).

``STORE_ITEMS`` items per store (as ``bench.group``'s chain), per-store and per-item levels
(lognormal), a weekly and a yearly cycle, a slow growth, Poisson days; one series in ten is
a slow mover (a level of 0.2-1 a day), one in twenty-five a new item (its first sale 20-90
days before the end of the history). Each item has a price, so revenue is units x price.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from contracts.series import series_key

__all__ = ["STORE_ITEMS", "Chain"]

STORE_ITEMS = 50
_WEEKLY = np.array([0.85, 0.9, 0.95, 1.0, 1.1, 1.25, 0.95])  # Monday..Sunday


@dataclass(frozen=True)
class Chain:
    """``series`` series of ``items`` items per store; history of ``days`` days through
    ``through``."""

    series: int
    through: date
    days: int = 730
    items: int = STORE_ITEMS
    seed: int = 0

    @property
    def stores(self) -> int:
        return -(-self.series // self.items)

    @property
    def start(self) -> date:
        return self.through - timedelta(days=self.days - 1)

    def store_id(self, store: int) -> str:
        return f"S{store:05d}"

    def item_id(self, item: int) -> str:
        return f"I{item:03d}"

    def keys(self) -> list[str]:
        return [
            series_key(self.store_id(k // self.items), self.item_id(k % self.items))
            for k in range(self.series)
        ]

    def _levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per series: mean level, first day index (new items start late), item price."""
        rng = np.random.default_rng(self.seed)
        store_level = rng.lognormal(0.0, 0.3, self.stores)
        item_level = rng.lognormal(2.5, 0.8, self.items)
        price = np.round(rng.lognormal(1.0, 0.6, self.items), 2)
        k = np.arange(self.series)
        level = store_level[k // self.items] * item_level[k % self.items]
        slow = k % 10 == 3
        level[slow] = rng.uniform(0.2, 1.0, int(slow.sum()))
        first = np.zeros(self.series, dtype=np.int64)
        new = k % 25 == 7
        first[new] = self.days - rng.integers(20, 90, int(new.sum()))
        return level, first, price[k % self.items]

    def _shape(self, days: np.ndarray) -> np.ndarray:
        """Weekly x yearly x trend for day indices from ``start``."""
        weekday = (days + self.start.weekday()) % 7
        yearly = 1 + 0.25 * np.sin(2 * np.pi * (days - 80) / 365.25)
        return np.asarray(_WEEKLY[weekday] * yearly * (1 + days / 3000))

    def history(self, stores_per_block: int = 200) -> Iterator[pa.Table]:
        """Daily rows ``date, store, item, sales, revenue`` (the import's input), a block of
        stores at a time (a block of 200 stores of 50 items: 7.3 M rows)."""
        level, first, price = self._levels()
        days = np.arange(self.days)
        shape = self._shape(days)
        dates = pa.array([self.start + timedelta(days=int(d)) for d in days], pa.date32())
        for block in range(0, self.stores, stores_per_block):
            lo = block * self.items
            hi = min(self.series, (block + stores_per_block) * self.items)
            rng = np.random.default_rng([self.seed, 1, block])
            mean = level[lo:hi, None] * shape[None, :]
            units = rng.poisson(mean).astype(np.float64)
            keep = days[None, :] >= first[lo:hi, None]
            series_idx, day_idx = np.nonzero(keep)
            k = series_idx + lo
            sales = units[series_idx, day_idx]
            yield pa.table(
                {
                    "date": dates.take(pa.array(day_idx)),
                    "store": pa.array([self.store_id(s) for s in range(self.stores)]).take(
                        pa.array(k // self.items)
                    ),
                    "item": pa.array([self.item_id(i) for i in range(self.items)]).take(
                        pa.array(k % self.items)
                    ),
                    "sales": sales,
                    "revenue": np.round(sales * price[k], 2),
                }
            )

    def day_events(
        self, day: date, max_events: int = 4, tag: str = "scale"
    ) -> Iterator[dict[str, Any]]:
        """One day of POS events for every series (each sells at least once that day: every
        series has a new day), its units split over up to ``max_events`` events."""
        level, _, price = self._levels()
        index = (day - self.start).days
        shape = self._shape(np.array([index]))[0]
        rng = np.random.default_rng([self.seed, 2, index])
        units = np.maximum(rng.poisson(level * shape), 1)
        noon = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
        for k in range(self.series):
            store, item = self.store_id(k // self.items), self.item_id(k % self.items)
            total = int(units[k])
            count = min(max_events, total)
            base, extra = divmod(total, count)
            for n in range(count):
                yield {
                    "event_id": f"{tag}-{day:%Y%m%d}-{store}-{item}-{n}",
                    "store_id": store,
                    "item_id": item,
                    "sold_at": (noon + timedelta(minutes=40 * n + k % 37)).isoformat(),
                    "quantity": float(base + (1 if n < extra else 0)),
                    "unit_price": float(price[k]),
                }
