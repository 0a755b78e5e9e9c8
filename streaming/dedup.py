"""Which events are new: an index of stored event ids, by sale day, derived from ``pos_sales``.

The event id alone is an event's identity: a POS retry may carry another ``sold_at`` day (a
clock corrected, a time zone crossed), and it is still the same sale. The index holds the ids
stored on the last ``window_days`` sale days and on any older day a batch touches; an event
is new when its id is on none of them. The index is a cache of the table, never the source of
truth: a day is loaded from the table the first time it is needed, so a restart or a late
event needs no special path.
"""

from collections.abc import Callable, Sequence
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["EventIdIndex"]

LoadDays = Callable[[Sequence[date]], pa.Table]


class EventIdIndex:
    """Keeps the event ids of the last ``window_days`` sale days (and days touched) in memory."""

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

    def _window_days(self, newest: date) -> set[date]:
        """The window's days, up to the newest day seen (a batch of late events moves nothing)."""
        top = max(newest, max(self._ids, default=newest))
        return {top - timedelta(days=k) for k in range(self._window.days + 1)}

    def new_events(self, events: pa.Table) -> pa.Table:
        """The events not stored before, each event id once (its first occurrence, in order)."""
        if events.num_rows == 0:
            return events
        days = set(pc.unique(events.column("sale_date")).to_pylist())
        self._ensure(days | self._window_days(max(days)))
        ids = events.column("event_id").to_pylist()
        batch = set(ids)
        # Set intersections run in C: ~1 ms per day for a 20,000-event batch.
        stored = set().union(*(batch & day_ids for day_ids in self._ids.values()))
        seen: set[str] = set()
        # ``seen.add`` returns None: an id is fresh when neither stored nor seen before.
        fresh = [not (i in stored or i in seen or seen.add(i)) for i in ids]  # type: ignore[func-returns-value]
        return events.filter(pa.array(fresh, pa.bool_()))

    def add(self, events: pa.Table) -> None:
        """Record events that are now stored; forget days older than the window.

        Days not loaded yet are left alone: they load from the table, these events included,
        when they are first needed. Starting such a day from just these ids (a replayed batch
        after a restart) would hide everything stored on it before.
        """
        days = events.column("sale_date")
        for day in pc.unique(days).to_pylist():
            loaded = self._ids.get(day)
            if loaded is not None:
                on_day = pc.equal(days, pa.scalar(day, pa.date32()))
                loaded.update(events.column("event_id").filter(on_day).to_pylist())
        if self._ids:
            horizon = max(self._ids) - self._window
            for day in [d for d in self._ids if d < horizon]:
                del self._ids[day]
