"""``shelfcast run``: the ingest query with the hand-off to Ray, metrics and a status file.

Threads: Spark's query thread runs each micro-batch and, after its commits, the hand-off;
a ticker applies retrain news when no batch ran for a while; the main thread waits for a
signal. SIGTERM drains: the batch in flight finishes, queued retrains stay on the coordinator.
"""

import json
import logging
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from retrain.cluster import CoordinatorClient, connect
from shelfcast.metrics import Metrics
from shelfcast.settings import Settings
from streaming.handoff import Handoff
from streaming.pipeline import BatchReport, IngestPipeline
from streaming.query import run_ingest
from streaming.thresholds import ThresholdStore

__all__ = ["run_service", "status_file"]

log = logging.getLogger("shelfcast.service")


def status_file(settings: Settings) -> Any:
    return settings.run_dir / "service-status.json"


class _Status:
    """The last batch and hand-off, written to a small JSON file for ``shelfcast status``."""

    def __init__(self, settings: Settings) -> None:
        self.path = status_file(settings)
        self.data: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat()}
        self.lock = threading.Lock()

    def update(self, **values: Any) -> None:
        with self.lock:
            self.data.update(values, updated_at=datetime.now(UTC).isoformat())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, default=str, indent=1))
            tmp.replace(self.path)


def run_service(settings: Settings, stop: threading.Event) -> None:
    """Run until ``stop`` is set; raises the package errors with what to do."""
    connect(settings)
    client = CoordinatorClient(settings, owner=True)  # the service's settings configure it
    client.actor()  # fail early, with a clear message, when Ray is not there
    metrics = Metrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
        log.info("metrics on http://127.0.0.1:%d/metrics", settings.metrics_port)
    status = _Status(settings)
    last_batch = [time.monotonic()]
    holder: dict[str, Handoff] = {}

    def wire(pipeline: IngestPipeline) -> None:
        handoff = Handoff(
            pipeline.store,
            ThresholdStore(settings.data_dir),
            client,
            lambda: pipeline.app_id,
            lock=pipeline.lock,
        )
        holder["handoff"] = handoff

        def on_batch(report: BatchReport) -> None:
            last_batch[0] = time.monotonic()
            metrics.on_batch(report)
            handoff.after_batch(report)
            status.update(last_batch={**asdict(report), "changed_series": report.series})

        pipeline.after_commit.append(on_batch)
        handoff.listeners.append(metrics.on_handoff)
        handoff.listeners.append(lambda r: status.update(last_handoff=dict(r)))

    def ticker() -> None:
        while not stop.wait(settings.handoff_idle_seconds / 2):
            handoff = holder.get("handoff")
            try:
                metrics.on_coordinator(client.status())
                idle = time.monotonic() - last_batch[0] >= settings.handoff_idle_seconds
                started = (settings.checkpoint_dir / "ingest" / "metadata").is_file()
                if handoff is not None and idle and started:
                    handoff.tick()
            except Exception as exc:  # a tick must never take the service down
                log.warning("idle hand-off failed (%s); will retry", exc)

    thread = threading.Thread(target=ticker, name="shelfcast-ticker", daemon=True)
    thread.start()
    try:
        run_ingest(settings, stop, on_start=wire)
    finally:
        stop.set()
        thread.join(timeout=30)
        client.close()
        status.update(stopped_at=datetime.now(UTC).isoformat())
