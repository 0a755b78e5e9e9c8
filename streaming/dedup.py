"""Which events are new: an index of stored event ids, per sale day, derived from ``pos_sales``.

The index is a cache of the table, never the source of truth: a day is loaded from the table
the first time a batch touches it, so a restart or a late event needs no special path.
"""

from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

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
        groups = list(_by_day(events))
        self._ensure({day for day, _, _ in groups})
        keep: list[pa.Array] = []
        for day, rows, ids in groups:
            stored, seen = self._ids[day], set()
            # ``seen.add`` returns None: an id is fresh when neither stored nor seen before.
            fresh = [not (i in stored or i in seen or seen.add(i)) for i in ids]  # type: ignore[func-returns-value]
            keep.append(rows.filter(pa.array(fresh, pa.bool_())))
        rows = pa.concat_arrays(keep)
        return events.take(rows.take(pc.sort_indices(rows)))  # Kafka order, as given

    def add(self, events: pa.Table) -> None:
        """Record events that are now stored; forget days older than the window.

        Days not loaded yet are left alone: they load from the table, these events included,
        when a batch first touches them. Starting such a day from just these ids (a replayed
        batch after a restart) would hide everything stored on it before.
        """
        for day, _, ids in _by_day(events):
            loaded = self._ids.get(day)
            if loaded is not None:
                loaded.update(ids)
        if self._ids:
            horizon = max(self._ids) - self._window
            for day in [d for d in self._ids if d < horizon]:
                del self._ids[day]


def _by_day(events: pa.Table) -> Iterator[tuple[date, pa.Array, list[str]]]:
    """Per sale day: the row numbers (ascending) and event ids of ``events``."""
    days = events.column("sale_date")
    for day in pc.unique(days).to_pylist():
        rows = pc.indices_nonzero(pc.equal(days, pa.scalar(day, pa.date32())))
        yield day, rows, events.column("event_id").take(rows).to_pylist()
