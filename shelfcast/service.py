"""``shelfcast run``: the ingest query with the hand-off to Ray, metrics and a status file.

Threads: Spark's query thread runs each micro-batch and, after its commits, the hand-off;
a ticker applies retrain news when no batch ran for a while; the main thread waits for a
signal. SIGTERM drains: the batch in flight finishes, queued retrains stay on the coordinator.
"""

import json
import logging
import threading
import time
from collections import deque
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from retrain.cluster.client import CoordinatorClient, connect, coordinators
from shelfcast.ingest import run_ingest
from shelfcast.metrics import Metrics
from shelfcast.private import private_dir
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings
from streaming.handoff import Handoff
from streaming.pipeline import BatchReport, IngestPipeline
from streaming.thresholds import ThresholdStore

if TYPE_CHECKING:  # importing the console package imports FastAPI: only when it runs
    from shelfcast.console.process import ConsoleProcess

__all__ = ["run_service", "start_spark", "status_file", "wait_for_stack"]

log = logging.getLogger("shelfcast.service")

# How long start-up waits for the coordinator to answer (created, configured, pinged).
_START_TIMEOUT_SECONDS = 60.0


def status_file(settings: Settings) -> Any:
    return settings.service_status_file


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
    console = _launch_console(settings)  # it imports while Spark starts
    try:
        _run(settings, stop, console)
    finally:
        if console is not None:
            console.stop()


def _run(settings: Settings, stop: threading.Event, console: "ConsoleProcess | None") -> None:
    # Spark's JVM starts (~10-40 s) while Ray is joined, the coordinator found and the
    # console started; the ingest then finds the session ready.
    start_spark(settings)
    retrain = retrain_config(settings)
    connect(retrain.ray)
    client = CoordinatorClient(retrain, owner=True)  # the service's settings configure it
    # Fail early, with a clear message, when Ray is not there; but a coordinator created now
    # starts a worker process first, which takes far over the client's 10 s on a busy machine.
    coordinators(retrain, owner=True, timeout=_START_TIMEOUT_SECONDS)
    client.actor()
    metrics = Metrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port, settings.metrics_host)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    status = _Status(settings)
    _console_ready(console)
    batches: deque[dict[str, Any]] = deque(maxlen=20)  # the console's "last micro-batches"
    handoffs: deque[dict[str, Any]] = deque(maxlen=20)  # and its recent waves
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
            entry = {**asdict(report), "changed_series": report.series}
            batches.append({**entry, "at": datetime.now(UTC).isoformat()})
            status.update(last_batch=entry, recent_batches=list(batches))

        def on_handoff(report: dict[str, Any]) -> None:
            if report.get("submitted") or report.get("published"):
                handoffs.append(dict(report))
            status.update(last_handoff=dict(report), recent_handoffs=list(handoffs))

        pipeline.after_commit.append(on_batch)
        handoff.listeners.append(metrics.on_handoff)
        handoff.listeners.append(on_handoff)

    def ticker() -> None:
        said = ""  # the failure last logged: a lasting outage is said once, not every tick
        while not stop.wait(settings.handoff_idle_seconds / 2):
            handoff = holder.get("handoff")
            try:
                metrics.on_coordinator(client.status())
                idle = time.monotonic() - last_batch[0] >= settings.handoff_idle_seconds
                started = (settings.checkpoint_dir / "ingest" / "metadata").is_file()
                if handoff is not None and idle and started:
                    handoff.tick()
            except Exception as exc:  # a tick must never take the service down
                if str(exc) != said:
                    log.warning("idle hand-off failed (%s); will retry", exc)
                said = str(exc)
            else:
                if said:
                    log.info("idle hand-off works again")
                said = ""

    thread = threading.Thread(target=ticker, name="shelfcast-ticker", daemon=True)
    thread.start()
    try:
        run_ingest(settings, stop, on_start=wire)
    finally:
        # Bounded, all of it (Ctrl-C returns within 10 s): a status call or tick in flight
        # is not waited for; the retrain news already brought is stored, the rest stays on
        # the coordinator until the next start acknowledges it.
        stop.set()
        thread.join(timeout=2.0)
        _store_last_news(holder.get("handoff"), settings)
        client.close(timeout=3.0)
        status.update(stopped_at=datetime.now(UTC).isoformat())


_spark_starting: list[threading.Thread] = []


def start_spark(settings: Settings) -> None:
    """Start Spark's session on a thread of its own, once per process; returns at once.

    The JVM's start is the longest step of the service's start: it runs beside whatever
    comes next (the stack coming up, Ray joined), and the ingest takes the session when it
    is ready (``getOrCreate`` returns the same one)."""
    private_dir(settings.data_dir)  # before anything writes under it
    if not _spark_starting:
        thread = threading.Thread(
            target=_start_spark, args=(settings,), name="shelfcast-spark", daemon=True
        )
        _spark_starting.append(thread)
        thread.start()


def wait_for_stack(settings: Settings, timeout: float) -> None:
    """Wait up to ``timeout`` s for the broker and the Ray head to listen: a service started
    beside its stack (``shelfcast demo``) starts Spark meanwhile. Returns either way; what
    does not answer then fails with its own message."""
    from shelfcast.embedded import wait_for_port

    deadline = time.monotonic() + timeout
    for address in (settings.ray_address, settings.bootstrap_servers.split(",")[0]):
        host, _, port = address.rpartition(":")
        if port.isdigit() and not wait_for_port(
            host or "127.0.0.1", int(port), max(0.0, deadline - time.monotonic())
        ):
            log.warning("nothing listens on %s after %.0f s", address, timeout)
            return


def _start_spark(settings: Settings) -> None:
    from shelfcast.ingest_config import spark_config
    from streaming.spark import spark_session

    try:
        spark_session(spark_config(settings))
    except Exception as exc:  # the ingest starts it again, and reports what fails
        log.debug("early Spark start failed: %s", exc)


def _store_last_news(handoff: Handoff | None, settings: Settings) -> None:
    """One last idle tick at stop, unless a micro-batch cut short still holds the tables."""
    if handoff is None or not (settings.checkpoint_dir / "ingest" / "metadata").is_file():
        return
    lock: Any = handoff.lock
    if not lock.acquire(timeout=1.0):
        return
    try:
        handoff.tick()
    except Exception as exc:  # stopping goes on; the news waits on the coordinator
        log.warning("the last retrain news was not stored (%s); the next start stores it", exc)
    finally:
        lock.release()


def _launch_console(settings: Settings) -> "ConsoleProcess | None":
    """The web console's process, started (it imports while Spark starts; see
    ``_console_ready``), or None when it is off."""
    from shelfcast.console.process import ConsoleProcess

    if not settings.console_port:
        return None
    console = ConsoleProcess(settings)
    console.launch()
    return console


def _console_ready(console: "ConsoleProcess | None") -> None:
    """Say where the console serves, or why it cannot (its port is taken: the service runs
    on without it, and the child is stopped)."""
    from shelfcast.errors import ShelfcastError

    if console is None:
        return
    try:
        log.info("console on %s", console.ready())
    except ShelfcastError as exc:
        log.warning("%s", exc)
