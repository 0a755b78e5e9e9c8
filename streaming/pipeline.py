"""The foreachBatch step: one micro-batch of raw records into the Delta tables, exactly once.

Each step commits with the application transaction ``(app_id, batch_id)`` and is skipped
when it already landed, so Spark's replay of the last batch after a crash changes nothing.
The steps after the first read what the first one stored, which makes their input the same
on a replay as the first time.
"""

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from contracts._reasons import too_large
from contracts.series import series_key
from streaming.aggregate import daily_increments, mark_plans_changed, update_series_state
from streaming.collect import Budget, collect_bounded
from streaming.config import Topics
from streaming.dedup import EventIdIndex
from streaming.errors import IngestError
from streaming.plans import (
    changed_rows,
    latest_revisions,
    split_plans,
    split_stores,
    touched_series,
)
from streaming.schemas import PLANS, POS_SALES, QUARANTINE, STORES, TABLES
from streaming.spool import RejectSpool
from streaming.tables import TableStore
from streaming.vacuum import check_vacuum_retention
from streaming.validate import Limits, quarantine_rows, split_batch

__all__ = ["BatchReport", "DeadLetterSink", "IngestPipeline", "maintenance_due"]

log = logging.getLogger("shelfcast.ingest")


class DeadLetterSink(Protocol):
    def publish(self, rejects: pa.Table) -> None: ...


@dataclass(frozen=True)
class BatchReport:
    """What one micro-batch did."""

    batch_id: int
    records: int
    stored: int
    duplicates: int
    quarantined: int
    series: int
    seconds: float
    replayed: bool
    daily_version: int
    changed_series: tuple[tuple[str, str], ...]
    # Plans and store records whose new revision was stored, and the series they touched.
    plans: int = 0
    stores: int = 0
    plan_series: tuple[tuple[str, str], ...] = ()


AfterCommit = Callable[[BatchReport], None]

_SCOPE = ["revision", "store_id", "item_id"]  # what a plan's change touches


def maintenance_due(
    batch_id: int, every_batches: int, seconds_since: float, every_seconds: float
) -> bool:
    """Whether batch ``batch_id`` ends with a compaction: every ``every_batches`` batches,
    or once ``every_seconds`` passed since the last one. The clock is for chains that send
    a day at once: one batch a day would otherwise leave ``daily_sales`` a file per store
    and day for ``every_batches`` days."""
    return batch_id % every_batches == every_batches - 1 or seconds_since >= every_seconds


@dataclass(frozen=True)
class _Valid:
    """What validation kept of a batch: its record count, events, plans and store records."""

    records: int
    events: pa.Table
    plans: pa.Table
    stores: pa.Table


class IngestPipeline:
    """Callable as Spark's ``foreachBatch(df, batch_id)``; ``process`` takes Arrow directly."""

    def __init__(
        self,
        store: TableStore,
        dead_letters: DeadLetterSink,
        limits: Limits,
        checkpoint: Path,
        dedup_window_days: int,
        maintain_every: int,
        retention_hours: float,
        maintain_every_seconds: float = 3600.0,
        app_id: str | None = None,
        topics: Topics | None = None,
        max_batch_bytes: int = 64 * 1024 * 1024,
        max_batch_records: int = 200_000,
    ) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.limits = limits
        self.checkpoint = checkpoint
        self.index = EventIdIndex(store.event_ids, dedup_window_days)
        self.maintain_every = maintain_every
        self.maintain_every_seconds = maintain_every_seconds
        self._maintained_at = time.monotonic()  # a restart counts from its start
        check_vacuum_retention(retention_hours)  # at start, not at the first vacuum
        self.retention_hours = retention_hours
        self._app_id = app_id
        self.topics = topics or Topics()
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_records = max_batch_records
        self.after_commit: list[AfterCommit] = []
        # Held while a batch runs; idle-time writers (the hand-off's tick) take it too.
        self.lock = threading.RLock()
        self.last_report: BatchReport | None = None

    @property
    def app_id(self) -> str:
        """``shelfcast-ingest-<query id>``: the query id survives restarts from a checkpoint."""
        if self._app_id is None:
            meta = self.checkpoint / "metadata"
            try:
                query_id = json.loads(meta.read_text().splitlines()[0])["id"]
            except (OSError, ValueError, KeyError, IndexError) as exc:
                raise IngestError(
                    f"Cannot read the query id from {meta}: {exc}. The checkpoint is damaged; "
                    "stop the ingest and restore it, or start over with a new checkpoint."
                ) from exc
            self._app_id = f"shelfcast-ingest-{query_id}"
        return self._app_id

    def __call__(self, frame: Any, batch_id: int) -> None:
        budget = Budget(self.max_batch_bytes, self.max_batch_records, self.limits.max_bytes)
        chunks = collect_bounded(frame, batch_id, budget)
        first = next(chunks)  # a whole batch comes before the lock, as it always did
        with self.lock:
            self.process_chunks(itertools.chain([first], chunks), batch_id)

    def process(self, raw: pa.Table, batch_id: int) -> BatchReport:
        return self.process_chunks([raw], batch_id)

    def process_chunks(self, chunks: Iterable[pa.Table], batch_id: int) -> BatchReport:
        """One micro-batch that arrives in ``chunks`` (one, unless it was too large to bring
        into the driver at once): its records are validated chunk by chunk, its rejects kept
        on disk past a bound, and every table is written once for the whole batch."""
        started = time.perf_counter()
        now = datetime.now(UTC)
        app = self.app_id
        with RejectSpool(self.max_batch_bytes // 4, self.checkpoint.parent) as rejects:
            valid = self._validate(chunks, batch_id, now, rejects)
            return self._store(valid, rejects, batch_id, now, app, started)

    def _validate(
        self, chunks: Iterable[pa.Table], batch_id: int, now: datetime, rejects: RejectSpool
    ) -> "_Valid":
        records = 0
        events, plans, stores = [], [], []
        for raw in chunks:
            records += raw.num_rows
            raw, oversized = self._oversized(raw, batch_id, now)
            sales, plan_records, store_records = self._by_topic(raw)
            split = split_batch(sales, batch_id, now, self.limits)
            plan_rows, plan_rejects = split_plans(plan_records, batch_id, now, self.limits)
            store_rows, store_rejects = split_stores(store_records, batch_id, now, self.limits)
            events.append(split.events)
            plans.append(plan_rows)
            stores.append(store_rows)
            for part in (oversized, split.rejects, plan_rejects, store_rejects):
                rejects.add(part)
        every = pa.concat_tables(events) if events else POS_SALES.empty_table()
        if len(events) > 1:  # in Kafka order again: a resend's first copy is the one kept
            every = every.sort_by(
                [(c, "ascending") for c in ("kafka_topic", "kafka_partition", "kafka_offset")]
            )
        return _Valid(
            records,
            every,
            pa.concat_tables(plans) if plans else PLANS.empty_table(),
            pa.concat_tables(stores) if stores else STORES.empty_table(),
        )

    def _oversized(self, raw: pa.Table, batch_id: int, now: datetime) -> tuple[pa.Table, pa.Table]:
        """Records whose value the driver got cut (``streaming.collect``) are over the event
        limit: refused for their size before any parsing (their first bytes may parse).
        Returns the other records, and these as ``quarantine`` rows."""
        if "raw_value_size" not in raw.column_names:
            return raw, QUARANTINE.empty_table()
        cut = pc.is_valid(raw.column("raw_value_size"))
        rows = [i for i, c in enumerate(cut.to_pylist()) if c]
        if not rows:
            return raw, QUARANTINE.empty_table()
        sizes = raw.column("raw_value_size").take(pa.array(rows, pa.int64())).to_pylist()
        reasons = [too_large(size, self.limits.max_bytes) for size in sizes]
        return raw.filter(pc.invert(cut)), quarantine_rows(raw, rows, reasons, now, batch_id)

    def _store(
        self,
        valid: "_Valid",
        rejects: RejectSpool,
        batch_id: int,
        now: datetime,
        app: str,
        started: float,
    ) -> BatchReport:
        """Write the batch's tables, each once (its transaction), in order."""
        replayed = self.store.committed("pos_sales", app, batch_id)
        if replayed:
            new = self._stored_by(batch_id, valid.events)
        else:
            new = self.index.new_events(valid.events)
            self.store.append_once("pos_sales", new, app, batch_id)
        self.index.add(new)

        # A batch without rejects has nothing to publish or store: no empty commit.
        if rejects.num_rows and not self.store.committed("quarantine", app, batch_id):
            # Topic first, table second: a crash between them re-sends (at least once).
            for part in rejects.parts():
                self.dead_letters.publish(part)
            with rejects.data() as data:
                self.store.append_once("quarantine", data, app, batch_id)

        self.store.add_daily_once(daily_increments(new, batch_id), app, batch_id)
        keys = sorted(
            set(
                zip(
                    new.column("store_id").to_pylist(),
                    new.column("item_id").to_pylist(),
                    strict=True,
                )
            )
        )
        state = update_series_state(self.store.series_rows(keys), new, batch_id, now)
        # Plans and stores after series_state: a crash between the two commits leaves the
        # plans as they were, so the replay finds the same changes (and skips the ledger).
        plans = latest_revisions(valid.plans, "plan_id")
        stores = latest_revisions(valid.stores, "store_id")
        plan_changes = changed_rows(
            plans,
            self.store.latest_rows("plans", "plan_id", plans.column("plan_id").to_pylist(), _SCOPE),
            "plan_id",
        )
        store_changes = changed_rows(
            stores,
            self.store.latest_rows(
                "stores", "store_id", stores.column("store_id").to_pylist(), ["revision"]
            ),
            "store_id",
        )
        touched: set[tuple[str, str]] = set()
        if plan_changes or store_changes:
            known: dict[str, set[str]] = {}
            for store_id, item_id in self.store.series_keys() + keys:
                known.setdefault(store_id, set()).add(item_id)
            touched = touched_series(plan_changes, store_changes, known)
            current = self.store.series_by_key(series_key(s, i) for s, i in touched)
            state = mark_plans_changed(state, current, touched, batch_id, now)
        self.store.upsert_series_once(state, app, batch_id)
        if plans.num_rows:
            self.store.upsert_latest_once("plans", plans, "plan_id", app, batch_id)
        if stores.num_rows:
            self.store.upsert_latest_once("stores", stores, "store_id", app, batch_id)

        since = time.monotonic() - self._maintained_at
        if maintenance_due(batch_id, self.maintain_every, since, self.maintain_every_seconds):
            self.store.compact_soon(tuple(TABLES), self.retention_hours)
            self._maintained_at = time.monotonic()
        report = BatchReport(
            batch_id=batch_id,
            records=valid.records,
            stored=new.num_rows,
            duplicates=valid.events.num_rows - new.num_rows,
            quarantined=rejects.num_rows,
            series=len(keys),
            seconds=time.perf_counter() - started,
            replayed=replayed,
            daily_version=self.store.table("daily_sales").version(),
            changed_series=tuple(keys),
            plans=len(plan_changes),
            stores=len(store_changes),
            plan_series=tuple(sorted(touched)),
        )
        self.last_report = report
        log.info(
            "batch %d: %d records, %d stored, %d duplicates, %d quarantined, %d series, %.2f s%s%s",
            batch_id,
            report.records,
            report.stored,
            report.duplicates,
            report.quarantined,
            report.series,
            report.seconds,
            (
                f"; {report.plans} plans and {report.stores} stores changed, "
                f"{len(touched)} series touched"
                if plan_changes or store_changes
                else ""
            ),
            " (replay)" if replayed else "",
        )
        for hook in self.after_commit:
            hook(report)
        return report

    def _by_topic(self, raw: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
        """The batch's sales, plan and store records (sales: any topic but the other two)."""
        topic = raw.column("topic")
        is_plan = pc.equal(topic, self.topics.plans)
        is_store = pc.equal(topic, self.topics.stores)
        if not (pc.any(is_plan).as_py() or pc.any(is_store).as_py()):
            return raw, raw.slice(0, 0), raw.slice(0, 0)
        is_sale = pc.invert(pc.or_(is_plan, is_store))
        return raw.filter(is_sale), raw.filter(is_plan), raw.filter(is_store)

    def _stored_by(self, batch_id: int, events: pa.Table) -> pa.Table:
        """What this batch stored the first time it ran (its events are in ``pos_sales``)."""
        days = sorted(set(events.column("sale_date").to_pylist()))
        if not days:
            return events.slice(0, 0)
        stored = self.store.read(
            "pos_sales", filters=[("sale_date", "in", days), ("batch_id", "=", batch_id)]
        )
        return stored.sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
