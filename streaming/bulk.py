"""A bulk load of daily history into ``daily_sales`` and ``series_state``, as a migration does
it: straight into Delta, not through Kafka (``shelfcast import``).

What an imported day is, against what the stream writes:

- ``daily_sales``: one row per series and day with the day's net units, revenue and returns,
  ``event_count`` 0 and ``updated_batch_id`` -1 (:data:`IMPORTED_BATCH_ID`; the stream's batch
  ids start at 0). No ``pos_sales`` rows: history is not events, and the stream's invariants
  that count events (``daily_sales.event_count`` is the number of ``pos_sales`` rows of the
  day; ``series_state.total_events`` is the sum of ``event_count``) hold as they are. Units
  equal the sum over ``pos_sales`` on streamed days only; an event later sold on an imported
  day adds to that day's row.
- ``series_state``: one row per series as the ledger leaves a series with nothing new since
  its last retrain: no events, no pending days, its first and last sale day from the history.
  The trigger hands a series over at its first new event (or ``shelfcast retrain --all``).

Safety: the driver is the tables' only writer, so the import runs while the service is
stopped, and it refuses a day on or after the first day a series already has (history goes
before what was streamed or imported). Every commit carries the application transaction
``(app_id, chunk)``: a load cut short and run again with the same input skips what landed.
"""

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from contracts.errors import SeriesKeyError
from contracts.series import series_key
from streaming.aggregate import blank_state
from streaming.errors import TableError
from streaming.schemas import DAILY_SALES, SERIES_STATE
from streaming.tables import TableStore

__all__ = ["IMPORTED_BATCH_ID", "BulkLoad", "ImportReport", "daily_rows"]

log = logging.getLogger("shelfcast.import")

IMPORTED_BATCH_ID = -1  # updated_batch_id of a daily row written by an import
_STATE_BATCH = 0  # series_state's one commit of an import


@dataclass(frozen=True)
class ImportReport:
    """What one import wrote."""

    app_id: str
    rows: int
    series: int
    stores: int
    first_day: date | None
    last_day: date | None
    duplicates: int  # input rows summed into another of the same series and day
    chunks: int
    skipped_chunks: int  # already landed (a load run again)
    already_done: bool = False


def daily_rows(frame: pa.Table) -> tuple[pa.Table, int]:
    """``store_id, item_id, day, units[, revenue, returns]`` as ``daily_sales`` rows (one per
    series and day: duplicates summed), sorted by store, item and day; with the number of
    input rows summed into another. Raises :class:`TableError` on a malformed row."""
    for column in ("store_id", "item_id", "day", "units"):
        if column not in frame.column_names:
            raise TableError(f"The input has no {column!r} column.")
    n = frame.num_rows
    zeros = pa.array([0.0] * n, pa.float64()) if n else pa.array([], pa.float64())
    work = pa.table(
        {
            "store_id": frame.column("store_id").cast(pa.string()),
            "item_id": frame.column("item_id").cast(pa.string()),
            "day": frame.column("day").cast(pa.date32()),
            "units": frame.column("units").cast(pa.float64()),
            "revenue": frame.column("revenue").cast(pa.float64())
            if "revenue" in frame.column_names
            else zeros,
            "returns": frame.column("returns").cast(pa.float64())
            if "returns" in frame.column_names
            else zeros,
        }
    )
    for column in ("store_id", "item_id", "day", "units"):
        nulls = work.column(column).null_count
        if nulls:
            raise TableError(f"{nulls} input rows have no {column}; fix the file and run again.")
    for column in ("units", "revenue", "returns"):
        values = pc.fill_null(work.column(column), 0.0)
        if not pc.all(pc.is_finite(values)).as_py():
            raise TableError(f"The input's {column} holds NaN or infinity; fix the file.")
    grouped = work.group_by(["store_id", "item_id", "day"]).aggregate(
        [("units", "sum"), ("revenue", "sum"), ("returns", "sum")]
    )
    m = grouped.num_rows
    out = pa.table(
        {
            "store_id": grouped.column("store_id"),
            "item_id": grouped.column("item_id"),
            "day": grouped.column("day"),
            "units": grouped.column("units_sum"),
            "revenue": pc.fill_null(grouped.column("revenue_sum"), 0.0),
            "returns": pc.fill_null(grouped.column("returns_sum"), 0.0),
            "event_count": pa.array([0] * m, pa.int64()),
            "updated_batch_id": pa.array([IMPORTED_BATCH_ID] * m, pa.int64()),
        },
        schema=DAILY_SALES,
    ).sort_by([("store_id", "ascending"), ("item_id", "ascending"), ("day", "ascending")])
    return out, n - m


def _spans(daily: pa.Table) -> pa.Table:
    """First and last day per series of ``daily_sales`` rows."""
    return daily.group_by(["store_id", "item_id"]).aggregate([("day", "min"), ("day", "max")])


class BulkLoad:
    """One import into ``store``'s tables under ``app_id`` (the input's identity): feed it
    chunks of ``daily_sales`` rows, each a whole set of stores, then :meth:`finish`."""

    def __init__(self, store: TableStore, app_id: str, today: date | None = None) -> None:
        self.store = store
        self.app_id = app_id
        self.today = today or datetime.now(UTC).date()
        store.ensure()
        self._known = self._first_days()
        self._spans: dict[tuple[str, str], tuple[date, date]] = {}
        self._stores: set[str] = set()
        self.rows = self.duplicates = self.chunks = self.skipped = 0

    def done_before(self) -> bool:
        """Whether this input was imported whole before (its ``series_state`` commit landed)."""
        return self.store.committed("series_state", self.app_id, _STATE_BATCH)

    def _first_days(self) -> dict[tuple[str, str], date]:
        state = self.store.read("series_state", ["store_id", "item_id", "first_sale_day"])
        return {
            (str(r["store_id"]), str(r["item_id"])): r["first_sale_day"]
            for r in state.to_pylist()
            if r["first_sale_day"] is not None
        }

    def add(self, chunk: int, daily: pa.Table, duplicates: int = 0) -> bool:
        """Append ``daily`` (rows from :func:`daily_rows`) as chunk number ``chunk``; False
        when it had landed before. Checks every row first."""
        spans = _spans(daily)
        self._check(spans)
        wrote = self.store.append_once("daily_sales", daily, self.app_id, chunk)
        for r in spans.to_pylist():
            key = (str(r["store_id"]), str(r["item_id"]))
            old = self._spans.get(key)
            first, last = r["day_min"], r["day_max"]
            if old is not None:
                first, last = min(first, old[0]), max(last, old[1])
            self._spans[key] = (first, last)
            self._stores.add(key[0])
        self.rows += daily.num_rows
        self.duplicates += duplicates
        self.chunks += 1
        self.skipped += 0 if wrote else 1
        return wrote

    def _check(self, spans: pa.Table) -> None:
        for r in spans.to_pylist():
            store_id, item_id = str(r["store_id"]), str(r["item_id"])
            try:
                key = series_key(store_id, item_id)
            except SeriesKeyError as exc:
                raise TableError(f"{exc}; fix the ids in the file.") from None
            if r["day_max"] > self.today:
                raise TableError(
                    f"{key} has sales on {r['day_max']}, after today ({self.today}); "
                    "an import holds history only."
                )
            first = self._known.get((store_id, item_id))
            if first is not None and r["day_max"] >= first:
                raise TableError(
                    f"{key} already has sales from {first} on, and the file holds "
                    f"{r['day_max']}: an import adds only days before a series' first. "
                    "Cut the file at that day (or import into an empty data dir)."
                )

    def finish(self, now: datetime | None = None) -> ImportReport:
        """Write the ``series_state`` rows of every series imported, once."""
        now = now or datetime.now(UTC)
        current = self.store.series_by_key(series_key(s, i) for s, i in self._spans)
        rows = list(_state_rows(self._spans.items(), current, now))
        self.store.upsert_series_once(
            pa.Table.from_pylist(rows, schema=SERIES_STATE), self.app_id, _STATE_BATCH
        )
        days = [d for span in self._spans.values() for d in span]
        return ImportReport(
            app_id=self.app_id,
            rows=self.rows,
            series=len(self._spans),
            stores=len(self._stores),
            first_day=min(days) if days else None,
            last_day=max(days) if days else None,
            duplicates=self.duplicates,
            chunks=self.chunks,
            skipped_chunks=self.skipped,
        )


def _state_rows(
    spans: Iterable[tuple[tuple[str, str], tuple[date, date]]],
    current: dict[str, dict[str, Any]],
    now: datetime,
) -> Iterator[dict[str, Any]]:
    """A new series' row as the ledger leaves one with nothing new since its last retrain;
    a known series (its history imported before what it had) keeps its row, with the
    earlier first day."""
    for (store_id, item_id), (first, last) in sorted(spans):
        old = current.get(series_key(store_id, item_id))
        if old is not None:
            yield {
                **old,
                "first_sale_day": min(first, old["first_sale_day"] or first),
                "last_sale_day": max(last, old["last_sale_day"] or last),
                "updated_batch_id": IMPORTED_BATCH_ID,
                "updated_at": now,
            }
            continue
        row = blank_state(store_id, item_id)
        row.update(
            first_sale_day=first,
            last_sale_day=last,
            updated_batch_id=IMPORTED_BATCH_ID,
            updated_at=now,
        )
        yield row
