"""Steps 4 and 5 of a micro-batch: apply retrain news, pick the due series, hand them to Ray.

Runs after the batch's Delta commits (an ``after_commit`` hook), and on idle ticks so that
finished retrains show up without new sales. The driver is the only writer of the tables:
the coordinator reports status changes and published forecasts, and this applies them.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa

from contracts.forecast import parse_model_version
from contracts.series import series_key
from streaming.drift import Served
from streaming.pipeline import BatchReport
from streaming.schemas import SERIES_STATE
from streaming.served import SERVED_DAYS, ServedForecasts
from streaming.tables import TableStore
from streaming.thresholds import ThresholdStore
from streaming.trigger import Due, due_among

__all__ = ["Handoff", "HandoffReport", "RetrainClient", "Submission"]

log = logging.getLogger("shelfcast.handoff")

# The tables a hand-off appends to or merges into.
HANDOFF_TABLES = ("forecasts", "drift", "series_state")


# (store, item, priority, stored events or None, reason, served model version or None):
# poison holds while the events stay (None: an operator's force, which lifts it); the reason
# is the trigger's (``Reason``); the series' next forecast carries a model version above its
# last served one.
Submission = tuple[str, str, float, int | None, str, int | None]


class RetrainClient(Protocol):
    """The coordinator, as the streaming side sees it."""

    def submit(self, due: list[Submission], version: int) -> None:
        """Hand the due series over (:data:`Submission`)."""

    def peek_updates(self) -> list[dict[str, Any]]: ...
    def ack_updates(self, seq: int) -> None: ...


class HandoffReport(dict[str, Any]):
    """Counts of what one hand-off did (for logs and metrics)."""


class Handoff:
    """The hand-off steps; the served forecasts and their drift are :class:`ServedForecasts`."""

    def __init__(
        self,
        store: TableStore,
        thresholds: ThresholdStore,
        client: RetrainClient,
        app_id: Callable[[], str],
        lock: AbstractContextManager[Any] | None = None,
        served_days: int = SERVED_DAYS,
        compact_every: int = 50,
    ) -> None:
        self.store = store
        # The tables it writes get a commit per hand-off; in a long wave without new sales no
        # micro-batch runs to compact them (the pipeline's maintenance), so it does.
        self.compact_every = compact_every
        self._writes = 0
        self.thresholds = thresholds
        self.client = client
        self.app_id = app_id
        self.lock: AbstractContextManager[Any] = lock or threading.RLock()
        self.forecasts = ServedForecasts(store, served_days)
        self.last: HandoffReport = HandoffReport()
        self.listeners: list[Callable[[HandoffReport], None]] = []

    @property
    def served(self) -> dict[str, Served]:
        """The served forecast of each series (``"store|item"``)."""
        return self.forecasts.served

    # entry points ---------------------------------------------------------------------------

    def after_batch(self, report: BatchReport) -> None:
        with self.lock:
            self._run(
                f"{self.app_id()}-handoff",
                report.batch_id,
                report.changed_series,
                report.daily_version,
            )

    def tick(self) -> None:
        """Apply retrain news when no micro-batch ran for a while."""
        with self.lock:
            version = int(self.store.table("daily_sales").version())
            self._run(f"{self.app_id()}-tick", int(time.time() * 1000), (), version)

    # the steps ------------------------------------------------------------------------------

    def _run(
        self, app: str, batch_id: int, changed: tuple[tuple[str, str], ...], version: int
    ) -> None:
        began = time.perf_counter()
        now = datetime.now(UTC)
        try:
            updates = self.client.peek_updates()
        except Exception as exc:  # the stream must not stop because Ray is away
            log.warning("cannot read retrain updates (%s); retrying next batch", exc)
            updates = []
        published, forecasts_stored = self.forecasts.record_forecasts(updates, app, batch_id)
        unreadable = self.thresholds.failures
        thresholds = self.thresholds.load()
        unreadable = self.thresholds.failures - unreadable
        changed_keys = [series_key(s, i) for s, i in changed]
        waiting = self.store.waiting_series()
        # Only the rows this batch can use: the changed, the updated, the waiting and the
        # forced series (rows shared with the store's own: see _edit).
        state = self.store.series_by_key(
            {*changed_keys, *(series_key(u["store_id"], u["item_id"]) for u in updates)}
            | waiting
            | set(thresholds.force)
        )
        last_days = {
            k: state[k]["last_sale_day"]
            for k in changed_keys
            if k in state and state[k]["last_sale_day"]
        }
        drifted, drift_stored = self.forecasts.record_drift(changed, last_days, app, batch_id, now)
        touched = self._apply_updates(state, updates)
        for key in drifted:
            if key in state:
                _edit(state, key)["drift_ratio"] = self.served[key].drift_ratio
                touched.add(key)
        due = due_among(state, waiting, thresholds, now)
        if due:
            forced = set(thresholds.force)
            try:
                self.client.submit(
                    [
                        (
                            d.store_id,
                            d.item_id,
                            d.priority,
                            None if d.key in forced else state[d.key]["total_events"] or 0,
                            d.kind,
                            parse_model_version(state[d.key].get("model_version")),
                        )
                        for d in due
                    ],
                    version,
                )
            except Exception as exc:
                log.warning("cannot hand %d series to Ray (%s); retrying next batch", len(due), exc)
                due = []
        for d in due:
            row = _edit(state, d.key)
            row.update(status="queued", last_submitted_at=now, last_error=None)
            row["plan_changes_since_retrain"] = 0
            if d.kind != "plan":  # a plan's job predicts again: the new sales still count
                row.update(events_since_retrain=0, days_since_retrain=0, pending_days=[])
            touched.add(d.key)
        state_stored = True
        if touched:
            rows = pa.Table.from_pylist([state[k] for k in sorted(touched)], schema=SERIES_STATE)
            state_stored = self.store.upsert_series_once(rows, app, batch_id)
        if published or drifted or touched:
            self._writes += 1
            if self._writes >= self.compact_every:
                self.store.compact_soon(HANDOFF_TABLES)
                self._writes = 0
        if updates and forecasts_stored and drift_stored and state_stored:
            self.client.ack_updates(max(u["seq"] for u in updates))
        elif updates:
            # A replayed batch: its writes had landed before, without what arrived since. The
            # news stays on the coordinator and the next batch (another id) stores it.
            log.info("%s batch %d was stored before: its retrain news waits", app, batch_id)
        self._clear_forced(due, thresholds.force)
        stages: Counter[str] = Counter()
        for u in updates:
            if u["status"] == "done":
                stages.update(u.get("stages") or {})
        self.last = HandoffReport(
            at=now.isoformat(),
            submitted=len(due),
            updates=len(updates),
            published=published,
            drift_days=sum(drifted.values()),
            retrain_seconds=[u["seconds"] for u in updates if u["status"] == "done"],
            drift_ratios=[self.served[k].drift_ratio for k in drifted],
            due=[d.key for d in due][:20],
            reasons=dict(Counter(d.kind for d in due)),
            thresholds_unreadable=unreadable,
            stage_seconds=dict(stages),
            seconds=time.perf_counter() - began,
        )
        for listener in self.listeners:
            listener(self.last)
        if due or published:
            log.info(
                "handed %d series to Ray at daily_sales v%d; %d forecasts published (%.2f s)",
                len(due),
                version,
                published,
                self.last["seconds"],
            )

    def _apply_updates(
        self, state: dict[str, dict[str, Any]], updates: list[dict[str, Any]]
    ) -> set[str]:
        touched = set()
        for u in updates:
            key = series_key(u["store_id"], u["item_id"])
            if key not in state:
                continue
            row = _edit(state, key)
            row["status"] = "failed" if u["status"] == "poison" else u["status"]
            if u["status"] in ("queued", "running"):
                # News of work the driver did not hand over (``shelfcast retrain``) starts the
                # busy timeout too; without a time the row stayed busy for ever.
                at = datetime.fromtimestamp(u["at"], UTC)
                last = row.get("last_submitted_at")
                row["last_submitted_at"] = at if last is None else max(last, at)
            if u["status"] in ("done", "poison") or u.get("error"):
                row["last_error"] = u.get("error")
            if u["status"] == "done":
                row["last_retrain_at"] = datetime.fromtimestamp(u["at"], UTC)
                row["model_version"] = u.get("model_version")
                row["family"] = (u.get("forecast") or {}).get("family")
                served = self.served.get(key)
                if served is not None:
                    row["validation_mase"] = served.validation_mase
                    row["drift_ratio"] = None
            touched.add(key)
        return touched

    def _clear_forced(self, due: list[Due], forced: tuple[str, ...]) -> None:
        sent = {d.key for d in due} & set(forced)
        if sent:
            self.thresholds.unforce(sent, who="shelfcast-service")


def _edit(state: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    """``state[key]`` as this batch's own copy: the rows the store keeps change only once they
    are committed."""
    row = dict(state[key])
    state[key] = row
    return row
