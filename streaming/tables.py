"""The Delta table store (delta-rs): create, commit once per micro-batch, read, maintain.

Idempotency: every write carries an application transaction ``(app_id, batch_id)``; a write
first reads ``transaction_version(app_id)`` and commits through that same snapshot, so a batch
Spark replays after a crash is skipped where it already landed.
"""

import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Field, Transaction, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from contracts.series import SEPARATOR, parse_series_key, series_key
from streaming.compaction import Compactor, MaintenanceProcess
from streaming.errors import TableError
from streaming.schemas import APPEND_ONLY, SERIES_STATE, TABLES
from streaming.trigger import waiting
from streaming.vacuum import check_vacuum_retention

__all__ = ["COMPACT_TARGET_BYTES", "TableStore"]

log = logging.getLogger("shelfcast.tables")

Write = Callable[[DeltaTable, CommitProperties], None]

# Compacted file size of the append-only tables partitioned by store (others: Delta's 100 MB).
COMPACT_TARGET_BYTES = {"forecasts": 2 << 20, "drift": 2 << 20}


def _series_key(row: dict[str, Any]) -> str:
    return series_key(row["store_id"], row["item_id"])


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in values)


class TableStore:
    """The four ingest tables under ``root``; ``root`` may be a local folder or object-store URI."""

    def __init__(self, root: Path | str, storage_options: dict[str, str] | None = None) -> None:
        self.root = str(root).rstrip("/")
        self.storage_options = storage_options
        self._local = threading.local()  # delta-rs handles are not for sharing across threads
        # The series_state rows with news since their last hand-over by "store|item" (see
        # waiting_series); None: read them afresh. Not locked here: the pipeline and the
        # hand-off use it under the pipeline's one lock.
        self._waiting: dict[str, dict[str, Any]] | None = None
        # Maintains the append-only tables off the writers' path (see compact_soon).
        # In a process of its own, after the service's work in CPU priority (compaction.py).
        apart = MaintenanceProcess(self.root, storage_options)
        self.compactor = Compactor(apart, stop=apart.stop)

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    def ensure(self, log_retention_hours: float = 24.0) -> None:
        """Create every table that does not exist yet (an empty table with its schema).

        ``log_retention_hours`` bounds ``_delta_log``: delta-rs drops older commit files at
        each checkpoint. Delta's default is 30 days, which at one commit per second per table
        is millions of files, and every handle update lists them (+0.75 ms per 1,000).
        Matching it to the vacuum retention costs nothing: time travel past the vacuum
        retention has no data files anyway.
        """
        if "://" not in self.root:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        retention = f"interval {max(1, math.ceil(log_retention_hours))} hours"
        for name, (schema, partitions) in TABLES.items():
            try:
                DeltaTable.create(
                    self.uri(name),
                    schema,
                    mode="ignore",
                    partition_by=partitions or None,
                    name=name,
                    configuration={"delta.logRetentionDuration": retention},
                    storage_options=self.storage_options,
                )
                dt = DeltaTable(self.uri(name), storage_options=self.storage_options)
                self._add_new_columns(dt, name, schema)
                self._check_layout(dt, name, partitions)
            except DeltaError as exc:
                raise TableError(
                    f"Could not create Delta table {self.uri(name)}: {exc}. "
                    "Check that the data directory is writable."
                ) from exc

    def _add_new_columns(self, dt: DeltaTable, name: str, schema: pa.Schema) -> None:
        """Columns added to a table's schema since it was created (nullable, at the end):
        older rows read them as null, and Delta's protocol stays 1/2."""
        have = {f.name for f in dt.schema().fields}
        missing = [Field.from_arrow(f) for f in schema if f.name not in have]
        if missing:
            log.info("adding %s to %s", ", ".join(f.name for f in missing), self.uri(name))
            dt.alter.add_columns(missing)

    def _check_layout(self, dt: DeltaTable, name: str, partitions: list[str]) -> None:
        """Warn where a table was created with other partitions than it has now: it works as
        it is, but reads that prune by store read all of it."""
        have = list(dt.metadata().partition_columns)
        if have != partitions:
            log.warning(
                "%s is partitioned by %s, not by %s (it was created before that layout): it "
                "works, but a series' reads (the console's series page) read all of it. "
                "See 'Tables made before' in docs/operations.md to move it.",
                self.uri(name),
                have or "nothing",
                partitions or "nothing",
            )

    def table(self, name: str, version: int | None = None) -> DeltaTable:
        """The table at ``version``, or its latest version.

        Latest: one handle per table and thread, brought up to date by reading only the new
        commits. Opening afresh replays the log since the last checkpoint, which grew from 2
        to 29 ms per open over 100 commits, several times per micro-batch.
        """
        try:
            if version is not None:
                return DeltaTable(
                    self.uri(name), version=version, storage_options=self.storage_options
                )
            handles: dict[str, DeltaTable] = self._local.__dict__.setdefault("handles", {})
            dt = handles.get(name)
            if dt is None:
                dt = DeltaTable(self.uri(name), storage_options=self.storage_options)
                handles[name] = dt
            else:
                dt.update_incremental()
            return dt
        except TableNotFoundError as exc:
            raise TableError(
                f"No Delta table at {self.uri(name)}. Run 'shelfcast ingest' once to create it, "
                "or check --data-dir."
            ) from exc

    def committed(self, name: str, app_id: str, batch_id: int) -> bool:
        """True when ``batch_id`` (or a later one) of ``app_id`` already landed in ``name``."""
        done = self.table(name).transaction_version(app_id)
        return done is not None and done >= batch_id

    def commit_once(self, name: str, app_id: str, batch_id: int, write: Write) -> bool:
        """Run ``write`` unless this batch already landed; True when it wrote."""
        dt = self.table(name)
        done = dt.transaction_version(app_id)
        if done is not None and done >= batch_id:
            return False
        props = CommitProperties(
            app_transactions=[Transaction(app_id=app_id, version=batch_id)],
            custom_metadata={"shelfcast.batch_id": str(batch_id), "shelfcast.app_id": app_id},
        )
        try:
            write(dt, props)
        except DeltaError as exc:
            raise TableError(f"Writing batch {batch_id} to {self.uri(name)} failed: {exc}") from exc
        return True

    def append_once(
        self, name: str, data: pa.Table | pa.RecordBatchReader, app_id: str, batch_id: int
    ) -> bool:
        """Append ``data`` once per batch (an empty append still records the batch); a
        stream of batches is written as it is read."""

        def write(dt: DeltaTable, props: CommitProperties) -> None:
            write_deltalake(dt, data, mode="append", commit_properties=props)

        return self.commit_once(name, app_id, batch_id, write)

    def add_daily_once(self, deltas: pa.Table, app_id: str, batch_id: int) -> bool:
        """Add per-day increments into ``daily_sales`` (insert new days), once per batch."""

        def write(dt: DeltaTable, props: CommitProperties) -> None:
            if deltas.num_rows == 0:
                write_deltalake(dt, deltas, mode="append", commit_properties=props)
                return
            stores = _sql_list(sorted(set(deltas.column("store_id").to_pylist())))
            # The batch's days bound the target: files whose days all lie outside them are
            # skipped by their statistics, not read into the join. A batch of a new day for
            # each of 10,000 series (two years stored, a file a store) merges in 0.07 s and
            # +85 MB instead of 1.0 s and +730 MB (bench/daily_merge.py).
            first, last = pc.min_max(deltas.column("day")).values()
            days = (
                f"t.day >= CAST('{first}' AS DATE) AND t.day <= CAST('{last}' AS DATE) AND "
                if first.is_valid
                else ""
            )
            (
                dt.merge(
                    deltas,
                    predicate=(
                        f"t.store_id IN ({stores}) AND {days}"
                        "t.store_id = s.store_id AND t.item_id = s.item_id AND t.day = s.day"
                    ),
                    source_alias="s",
                    target_alias="t",
                    commit_properties=props,
                )
                .when_matched_update(
                    {
                        "units": "t.units + s.units",
                        "revenue": "t.revenue + s.revenue",
                        "returns": "t.returns + s.returns",
                        "event_count": "t.event_count + s.event_count",
                        "updated_batch_id": "s.updated_batch_id",
                    }
                )
                .when_not_matched_insert_all()
                .execute()
            )

        return self.commit_once("daily_sales", app_id, batch_id, write)

    def upsert_series_once(self, rows: pa.Table, app_id: str, batch_id: int) -> bool:
        """Replace the ``series_state`` rows of the series in ``rows``, once per batch; the
        rows kept in memory follow (or are dropped, to be read afresh, when the batch had
        landed already or the write failed)."""
        try:
            wrote = self._upsert_series_once(rows, app_id, batch_id)
        except BaseException:
            self._waiting = None
            raise
        if not wrote:
            self._waiting = None
        elif self._waiting is not None:
            for row in rows.to_pylist():
                key = _series_key(row)
                if waiting(row):
                    self._waiting[key] = row
                else:
                    self._waiting.pop(key, None)
        return wrote

    def waiting_series(self) -> set[str]:
        """The series whose stored row has news since its last hand-over
        (:func:`streaming.trigger.waiting`): only these, and forced ones, can be due.

        Their rows are the only ones the driver keeps: the driver is the table's only writer
        and writes it through ``upsert_series_once``, so they stay exact, and between waves
        they are a trickle. Every other row is read from the table when asked for: keeping
        them all held ~1.5 KB a series (139 MB per 100,000, ``bench.state``)."""
        return set(self._waiting_rows())

    def series_by_key(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The ``series_state`` rows of ``keys`` (``"store|item"``) that exist, by key. The
        rows of waiting series are shared with the store's own: copy one before changing it."""
        kept = self._waiting_rows()
        found: dict[str, dict[str, Any]] = {}
        missing: set[str] = set()
        for key in keys:
            row = kept.get(key)
            if row is None:
                missing.add(key)
            else:
                found[key] = row
        if missing:
            pairs = [parse_series_key(key) for key in missing]
            for row in self._select(pairs).to_pylist():
                found[_series_key(row)] = row
        return found

    def series_rows(self, keys: Sequence[tuple[str, str]]) -> pa.Table:
        """The ``series_state`` rows of ``keys`` (fewer when a series is new)."""
        return self._select(keys)

    def series_keys(self) -> list[tuple[str, str]]:
        """``(store, item)`` of every series in ``series_state``."""
        found = self.read("series_state", ["store_id", "item_id"])
        return list(
            zip(
                found.column("store_id").to_pylist(),
                found.column("item_id").to_pylist(),
                strict=True,
            )
        )

    def series_state(self) -> dict[str, dict[str, Any]]:
        """Every ``series_state`` row by ``"store|item"``, read from the table: a read of
        every series (2.9 s at 100,000, nearly all of it in ``to_pylist``), so not for a
        micro-batch's path; :meth:`series_by_key` reads the rows it needs."""
        return {_series_key(row): row for row in self.read("series_state").to_pylist()}

    def _waiting_rows(self) -> dict[str, dict[str, Any]]:
        if self._waiting is None:
            found = self.read(
                "series_state",
                filters=[
                    [("events_since_retrain", ">", 0)],
                    [("plan_changes_since_retrain", ">", 0)],
                ],
            )
            self._waiting = {_series_key(row): row for row in found.to_pylist() if waiting(row)}
        return self._waiting

    def _select(self, keys: Sequence[tuple[str, str]]) -> pa.Table:
        """The ``series_state`` rows of ``keys``, in the schema of ``SERIES_STATE``: the
        table read whole as Arrow (14 ms at 100,000 series) and filtered here, not in the
        scan (see ``latest_rows``); only the rows found become Python objects."""
        if not keys:
            return SERIES_STATE.empty_table()
        found = self.read("series_state")
        joined = pc.binary_join_element_wise(
            found.column("store_id").cast(pa.string()),
            found.column("item_id").cast(pa.string()),
            SEPARATOR,
        )
        wanted = pa.array({series_key(s, i) for s, i in keys}, pa.string())
        found = found.filter(pc.is_in(joined, wanted))
        return found.select(SERIES_STATE.names).cast(SERIES_STATE)

    def _upsert_series_once(self, rows: pa.Table, app_id: str, batch_id: int) -> bool:
        def write(dt: DeltaTable, props: CommitProperties) -> None:
            if rows.num_rows == 0:
                write_deltalake(dt, rows, mode="append", commit_properties=props)
                return
            (
                dt.merge(
                    rows,
                    predicate="t.store_id = s.store_id AND t.item_id = s.item_id",
                    source_alias="s",
                    target_alias="t",
                    commit_properties=props,
                )
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )

        return self.commit_once("series_state", app_id, batch_id, write)

    def upsert_latest_once(
        self, name: str, rows: pa.Table, key: str, app_id: str, batch_id: int
    ) -> bool:
        """Insert the rows of new ``key`` values and replace a stored row only by a higher
        ``revision`` (a lower or equal one changes nothing), once per batch."""

        def write(dt: DeltaTable, props: CommitProperties) -> None:
            (
                dt.merge(
                    rows,
                    predicate=f"t.{key} = s.{key}",
                    source_alias="s",
                    target_alias="t",
                    commit_properties=props,
                )
                .when_matched_update_all(predicate="s.revision > t.revision")
                .when_not_matched_insert_all()
                .execute()
            )

        return self.commit_once(name, app_id, batch_id, write)

    def latest_rows(
        self, name: str, key: str, values: Sequence[str], columns: list[str]
    ) -> dict[str, dict[str, Any]]:
        """``columns`` of the stored rows of ``name`` whose ``key`` is one of ``values``."""
        if not values:
            return {}
        # Filtered here, not in the scan: a merge writes strings that the scan's filter
        # refuses to compare (string_view against string).
        found = self.read(name, list(dict.fromkeys([key, *columns])))
        wanted = pc.is_in(found.column(key).cast(pa.string()), pa.array(values, pa.string()))
        return {row[key]: row for row in found.filter(wanted).to_pylist()}

    def read(
        self,
        name: str,
        columns: list[str] | None = None,
        filters: list[tuple[str, str, Any]] | list[list[tuple[str, str, Any]]] | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Rows of ``name``; ``filters`` is a conjunction, or a list of them (any matches)."""
        try:
            return self.table(name, version).to_pyarrow_table(columns=columns, filters=filters)
        except DeltaError as exc:
            raise TableError(f"Reading {self.uri(name)} failed: {exc}") from exc

    def event_ids(self, days: Sequence[date]) -> pa.Table:
        """``event_id, sale_date, batch_id`` of ``pos_sales`` on ``days``."""
        if not days:
            return pa.table({"event_id": [], "sale_date": [], "batch_id": []})
        return self.read(
            "pos_sales", ["event_id", "sale_date", "batch_id"], [("sale_date", "in", list(days))]
        )

    def compact(self, names: Sequence[str], target_size: int | None = None) -> None:
        """Rewrite the small files of tables ``names`` into few (the rows unchanged): every
        commit adds a file, and a reader opens each one that its filter cannot skip.

        A file under the target size is rewritten at every compaction with the new ones, so
        the by-store history tables aim at ``COMPACT_TARGET_BYTES``: a store's history
        stops being rewritten once its files reach it (with Delta's 100 MB, all of it was,
        every time). ``target_size`` overrides it for every table."""
        for name in names:
            try:
                target = target_size or COMPACT_TARGET_BYTES.get(name)
                self.table(name).optimize.compact(target_size=target)
            except DeltaError as exc:
                log.warning("compacting %s failed (will retry next time): %s", name, exc)

    def compact_soon(self, names: Sequence[str], vacuum_hours: float | None = None) -> None:
        """Compact tables ``names`` (and vacuum them, ``vacuum_hours``): the append-only ones
        on the compactor's thread, the merged ones now, as a merge and a compaction of the
        same files cannot both commit."""
        self.compactor.request([n for n in names if n in APPEND_ONLY], vacuum_hours)
        self.maintain_tables([n for n in names if n not in APPEND_ONLY], vacuum_hours)

    def maintain(self, retention_hours: float) -> None:
        """Compact small files, then vacuum files older than the retention (all of it now;
        ``compact_soon`` does it off the caller's thread).

        Delta's own check wants the table's ``deletedFileRetentionDuration`` (7 days); ours
        (``check_vacuum_retention``) is what a retrain may still read, so Delta's is off.
        """
        check_vacuum_retention(retention_hours)
        self.maintain_tables(tuple(TABLES), retention_hours)

    def maintain_tables(self, names: Sequence[str], vacuum_hours: float | None) -> None:
        """Compact tables ``names`` now, then vacuum them (``vacuum_hours``; None: no vacuum)."""
        self.compact(names)
        if vacuum_hours is None:
            return
        for name in names:
            try:
                dt = self.table(name)
                dt.vacuum(
                    retention_hours=math.ceil(vacuum_hours),
                    dry_run=False,
                    enforce_retention_duration=False,
                )
            except DeltaError as exc:
                log.warning("maintenance of %s failed (will retry next time): %s", name, exc)
