"""The foreachBatch step: one micro-batch of raw records into the Delta tables, exactly once.

Each step commits with the application transaction ``(app_id, batch_id)`` and is skipped
when it already landed, so Spark's replay of the last batch after a crash changes nothing.
The steps after the first read what the first one stored, which makes their input the same
on a replay as the first time.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from streaming.aggregate import daily_increments, update_series_state
from streaming.config import Topics
from streaming.dedup import EventIdIndex
from streaming.errors import IngestError
from streaming.tables import TableStore
from streaming.vacuum import check_vacuum_retention
from streaming.validate import Limits, split_batch

__all__ = ["BatchReport", "DeadLetterSink", "IngestPipeline"]

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


AfterCommit = Callable[[BatchReport], None]


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
        app_id: str | None = None,
        topics: Topics | None = None,
        max_batch_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.limits = limits
        self.checkpoint = checkpoint
        self.index = EventIdIndex(store.event_ids, dedup_window_days)
        self.maintain_every = maintain_every
        check_vacuum_retention(retention_hours)  # at start, not at the first vacuum
        self.retention_hours = retention_hours
        self._app_id = app_id
        self.topics = topics or Topics()
        self.max_batch_bytes = max_batch_bytes
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
        raw = frame.toArrow()
        with self.lock:
            self.process(raw, batch_id)

    def process(self, raw: pa.Table, batch_id: int) -> BatchReport:
        started = time.perf_counter()
        now = datetime.now(UTC)
        app = self.app_id
        split = split_batch(raw, batch_id, now, self.limits)

        replayed = self.store.committed("pos_sales", app, batch_id)
        if replayed:
            new = self._stored_by(batch_id, split.events)
        else:
            new = self.index.new_events(split.events)
            self.store.append_once("pos_sales", new, app, batch_id)
        self.index.add(new)

        # A batch without rejects has nothing to publish or store: no empty commit.
        if split.rejects.num_rows and not self.store.committed("quarantine", app, batch_id):
            # Topic first, table second: a crash between them re-sends (at least once).
            self.dead_letters.publish(split.rejects)
            self.store.append_once("quarantine", split.rejects, app, batch_id)

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
        self.store.upsert_series_once(state, app, batch_id)

        if batch_id % self.maintain_every == self.maintain_every - 1:
            self.store.maintain(self.retention_hours)
        report = BatchReport(
            batch_id=batch_id,
            records=raw.num_rows,
            stored=new.num_rows,
            duplicates=split.events.num_rows - new.num_rows,
            quarantined=split.rejects.num_rows,
            series=len(keys),
            seconds=time.perf_counter() - started,
            replayed=replayed,
            daily_version=self.store.table("daily_sales").version(),
            changed_series=tuple(keys),
        )
        self.last_report = report
        log.info(
            "batch %d: %d records, %d stored, %d duplicates, %d quarantined, %d series, %.2f s%s",
            batch_id,
            report.records,
            report.stored,
            report.duplicates,
            report.quarantined,
            report.series,
            report.seconds,
            " (replay)" if replayed else "",
        )
        for hook in self.after_commit:
            hook(report)
        return report

    def _stored_by(self, batch_id: int, events: pa.Table) -> pa.Table:
        """What this batch stored the first time it ran (its events are in ``pos_sales``)."""
        days = sorted(set(events.column("sale_date").to_pylist()))
        if not days:
            return events.slice(0, 0)
        stored = self.store.read(
            "pos_sales", filters=[("sale_date", "in", days), ("batch_id", "=", batch_id)]
        )
        return stored.sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
