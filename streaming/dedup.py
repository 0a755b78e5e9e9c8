"""Which events are new: an index of stored event ids, per sale day, derived from ``pos_sales``.

The index is a cache of the table, never the source of truth: a day is loaded from the table
the first time a batch touches it, so a restart or a late event needs no special path.
"""

from collections.abc import Callable, Sequence
from datetime import date, timedelta

import pyarrow as pa

__all__ = ["EventIdIndex"]

LoadDays = Callable[[Sequence[date]], pa.Table]


class EventIdIndex:
    """Keeps the event ids of the last ``window_days`` sale days in memory."""

    def __init__(self, load_days: LoadDays, window_days: int) -> None:
        self._load_days = load_days
        self._window = timedelta(days=window_days)
        self._ids: dict[date, set[str]] = {}

    def _ensure(self, days: set[date]) -> None:
        missing = sorted(days - self._ids.keys())
        if not missing:
            return
        for day in missing:
            self._ids[day] = set()
        stored = self._load_days(missing)
        for event_id, day in zip(
            stored.column("event_id").to_pylist(),
            stored.column("sale_date").to_pylist(),
            strict=True,
        ):
            self._ids[day].add(event_id)

    def new_events(self, events: pa.Table) -> pa.Table:
        """The events not stored before, each event id once (its first occurrence)."""
        if events.num_rows == 0:
            return events
        ids = events.column("event_id").to_pylist()
        days = events.column("sale_date").to_pylist()
        self._ensure(set(days))
        seen: set[tuple[date, str]] = set()
        keep = []
        for event_id, day in zip(ids, days, strict=True):
            fresh = event_id not in self._ids[day] and (day, event_id) not in seen
            seen.add((day, event_id))
            keep.append(fresh)
        return events.filter(pa.array(keep, pa.bool_()))

    def add(self, events: pa.Table) -> None:
        """Record events that are now stored; forget days older than the window.

        Days not loaded yet are left alone: they load from the table, these events included,
        when a batch first touches them. Starting such a day from just these ids (a replayed
        batch after a restart) would hide everything stored on it before.
        """
        for event_id, day in zip(
            events.column("event_id").to_pylist(),
            events.column("sale_date").to_pylist(),
            strict=True,
        ):
            loaded = self._ids.get(day)
            if loaded is not None:
                loaded.add(event_id)
        if self._ids:
            horizon = max(self._ids) - self._window
            for day in [d for d in self._ids if d < horizon]:
                del self._ids[day]
