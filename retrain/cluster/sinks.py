"""The coordinator's sinks: MLflow's wave runs and their series tables, the forecast producer
and the Delta reads, each on a thread of its own.

A hung MLflow (a tracking server that accepts and never answers waits its client's 120 s
timeout, seven times over) delays only the wave runs: forecasts keep being published, and the
queue's rebuild reads Delta meanwhile. MLflow's store is created and migrated on its thread,
once, and rebuilt there after the coordinator takes a new configuration; the producer lives
on the Kafka thread, which produces each forecast and polls the producer for its delivery
reports. :meth:`Sinks.deliver` returns only once Kafka confirmed a forecast; the producer
retries a message until the broker acknowledges it (see :mod:`retrain.stores.publish`), so a
forecast is produced again only after a definite refusal, or when the producer had to be
replaced.
"""

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from contracts.forecast import Forecast
from retrain.cluster.task import TaskResult
from retrain.config import CoordinatorConfig, PublishConfig
from retrain.stores.publish import Delivery, ForecastPublisher
from retrain.stores.registry import GroupRecord, Tracker, redact

__all__ = ["TABLE_PART_ROWS", "Outbox", "Sinks", "error_text", "forecast_message"]

log = logging.getLogger("shelfcast.coordinator")

# A forecast not confirmed this long is reported, then again every _STILL_WAITING_SECONDS.
_SLOW_DELIVERY_SECONDS = 10.0
_STILL_WAITING_SECONDS = 60.0

# A wave's series rows go to MLflow in parts of this many (one upload each), and the rest when
# the wave finishes.
TABLE_PART_ROWS = 1000
# Rows held while MLflow is away; past this the oldest go (every forecast's lineage stays in
# the forecast itself, and the forecasts table).
_TABLE_MAX_ROWS = 100_000

T = TypeVar("T")


class Sinks:
    """MLflow, Kafka and Delta for one coordinator, each on its own thread: each sees one
    caller, in order, and none waits for another."""

    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        self._mlflow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelfcast-mlflow")
        self._delta = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelfcast-delta")
        self.outbox = Outbox(config.publish)
        self._tracker: Tracker | None = None
        self._wave_runs: dict[str, str] = {}  # wave id -> its MLflow run
        # Each wave's series rows not stored yet, and its parts stored; the MLflow thread
        # takes a part out to store it and puts it back if that fails.
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._parts: dict[str, int] = {}
        self._rows_lock = threading.Lock()
        self.dropped_rows = 0

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the Delta thread (reads of the service's tables)."""
        return await asyncio.get_running_loop().run_in_executor(self._delta, fn, *args)

    async def _on_mlflow(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._mlflow, fn, *args)

    def reconfigure(self, config: CoordinatorConfig) -> None:
        """Take new addresses: MLflow is opened again at its next use, the producer now."""
        self.config = config
        self._mlflow.submit(self._reset)
        self.outbox.reconfigure(config.publish)

    def _reset(self) -> None:
        self._tracker = None

    async def ready(self) -> None:
        """Open the producer and MLflow now (raises when MLflow cannot be reached)."""
        self.outbox.open()
        await self._on_mlflow(self._ensure)

    def _ensure(self) -> Tracker:
        """MLflow (its store created and migrated here, once)."""
        config = self.config
        if self._tracker is None:
            artifacts = config.artifact_dir
            if artifacts is not None:
                artifacts.mkdir(parents=True, exist_ok=True)
            self._tracker = Tracker(
                config.task.tracking_uri,
                config.task.experiment,
                None if artifacts is None else artifacts.as_uri(),
                retries=config.task.mlflow_retries,
            )
        return self._tracker

    def close(self) -> None:
        """Stop the threads (what is in flight to Kafka gets a few seconds)."""
        self.outbox.close()
        self._mlflow.shutdown(wait=False, cancel_futures=True)
        self._delta.shutdown(wait=False, cancel_futures=True)

    # MLflow: one run per wave ---------------------------------------------------------------

    async def wave_run(self, wave_id: str) -> str:
        """The wave's MLflow run, started at its first series."""
        run_id = self._wave_runs.get(wave_id)
        if run_id is None:
            run_id = await self._on_mlflow(self._start_wave, wave_id)
        return run_id

    async def group_champions(self) -> dict[str, GroupRecord]:
        """The group models MLflow serves (a restarted coordinator's starting point)."""
        return await self._on_mlflow(lambda: self._ensure().group_champions())

    def _start_wave(self, wave_id: str) -> str:
        tracker = self._ensure()
        if wave_id not in self._wave_runs:
            self._wave_runs[wave_id] = tracker.start_wave(wave_id, {})
        return self._wave_runs[wave_id]

    @property
    def open_waves(self) -> list[str]:
        """The waves whose run is open."""
        return list(self._wave_runs)

    async def finish_wave(self, wave_id: str, totals: dict[str, float]) -> None:
        """Store the wave's last series rows and close its run with its totals (once; kept
        open to try again if MLflow fails)."""
        run_id = self._wave_runs.pop(wave_id, None)
        if run_id is None:
            with self._rows_lock:  # no run to hold them (closed already)
                self._rows.pop(wave_id, None)
            return
        try:
            await self._on_mlflow(self._finish_wave, wave_id, run_id, totals)
        except Exception as exc:
            self._wave_runs.setdefault(wave_id, run_id)
            log.warning("the MLflow run of wave %s not closed yet: %s", wave_id, exc)

    def _finish_wave(self, wave_id: str, run_id: str, totals: dict[str, float]) -> None:
        self._store_rows(wave_id, run_id, everything=True)
        self._ensure().finish_wave(run_id, totals)
        with self._rows_lock:
            self._rows.pop(wave_id, None)
            self._parts.pop(wave_id, None)

    def add_row(self, wave_id: str, row: dict[str, Any]) -> None:
        """Keep a series' row for its wave's table; a full part goes to MLflow now, on the
        MLflow thread (the task's result does not wait for it)."""
        with self._rows_lock:
            rows = self._rows.setdefault(wave_id, [])
            rows.append(row)
            held = sum(len(r) for r in self._rows.values())
            if held > _TABLE_MAX_ROWS:
                del rows[0]
                self.dropped_rows += 1
            full = len(rows) >= TABLE_PART_ROWS
        run_id = self._wave_runs.get(wave_id)
        if full and run_id is not None:
            self._mlflow.submit(self._store_rows_logged, wave_id, run_id)

    def _store_rows_logged(self, wave_id: str, run_id: str) -> None:
        try:
            self._store_rows(wave_id, run_id, everything=False)
        except Exception as exc:  # kept; tried again with the next part or at the wave's end
            log.warning("the series table of wave %s not stored yet: %s", wave_id, exc)

    def _store_rows(self, wave_id: str, run_id: str, everything: bool) -> None:
        """Store the wave's rows in parts of :data:`TABLE_PART_ROWS` (the last part short
        only when ``everything``); on the MLflow thread."""
        while True:
            with self._rows_lock:
                rows = self._rows.get(wave_id, [])
                if not rows or (len(rows) < TABLE_PART_ROWS and not everything):
                    return
                part = rows[:TABLE_PART_ROWS]
                del rows[:TABLE_PART_ROWS]
                number = self._parts.get(wave_id, 0)
            try:
                self._ensure().log_series_table(run_id, part, number)
            except BaseException:
                with self._rows_lock:
                    self._rows.setdefault(wave_id, [])[:0] = part
                raise
            with self._rows_lock:
                self._parts[wave_id] = number + 1

    # Kafka: forecasts, confirmed ------------------------------------------------------------

    async def deliver(self, forecast: Forecast, report: Callable[[str], None]) -> None:
        """Publish ``forecast`` and return once Kafka confirmed it; ``report`` hears of a slow
        or refused delivery, in words for the operator.

        A Kafka outage waits for the broker (the producer retries the same message), never
        retries the task: each run of the task registers another model version, and its
        failures would poison a series that trained well.
        """
        loop = asyncio.get_running_loop()
        delay = max(self.config.policy.backoff_seconds, 0.5)
        while True:
            settled: asyncio.Future[Delivery] = loop.create_future()

            def then(delivery: Delivery, settled: "asyncio.Future[Delivery]" = settled) -> None:
                loop.call_soon_threadsafe(_settle, settled, delivery)

            self.outbox.send(forecast, then)
            waited, every = 0.0, _SLOW_DELIVERY_SECONDS
            while True:
                try:
                    delivery = await asyncio.wait_for(asyncio.shield(settled), every)
                    break
                except TimeoutError:
                    waited += every
                    every = _STILL_WAITING_SECONDS
                    report(
                        f"forecast not confirmed by Kafka for {waited:.0f} s; still waiting. "
                        "Check that Kafka at SHELFCAST_BOOTSTRAP_SERVERS is up."
                    )
            if delivery.error is None:
                return
            error = self.redacted(delivery.error)
            report(f"forecast not delivered ({error}); sending again in {delay:g} s")
            log.warning("forecast for %s not delivered: %s", forecast.key, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    def redacted(self, text: str) -> str:
        """An error's text without the stores' credentials: it is logged, and kept as the
        series' ``last_error`` in ``series_state``."""
        for uri in (self.config.task.optuna_url, self.config.task.tracking_uri):
            if uri:
                text = redact(text, uri)
        return text


def _settle(future: "asyncio.Future[Delivery]", delivery: Delivery) -> None:
    if not future.done():
        future.set_result(delivery)


class Outbox:
    """The forecast producer on a thread of its own: forecasts are produced there, and the
    same thread polls the producer, which runs their delivery callbacks there.

    The producer is created on first use, and replaced after new settings or a fatal error
    (librdkafka's idempotent producer cannot go on after one); what the old one held is
    reported as not delivered, and its callers send it again."""

    def __init__(self, publish: PublishConfig) -> None:
        self.publish = publish
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._publisher: ForecastPublisher | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._broken = False

    def send(self, forecast: Forecast, then: Callable[[Delivery], None]) -> None:
        """Produce ``forecast``; ``then(delivery)`` is called on the Kafka thread once it is
        confirmed or refused."""
        self._command(lambda: self._send(forecast, then))

    def open(self) -> None:
        """Create the producer now, not at the first forecast."""
        self._command(self._open)

    def reconfigure(self, publish: PublishConfig) -> None:
        self._command(lambda: self._replace(publish))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after up to ``timeout`` s for what is in flight."""
        done = threading.Event()

        def stop() -> None:
            self._stopped = True
            if self._publisher is not None:
                self._publisher.close(timeout)
                self._publisher = None
            done.set()

        self._command(stop)
        done.wait(timeout + 5)

    def _command(self, command: Callable[[], None]) -> None:
        self._commands.put(command)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="shelfcast-kafka", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while not self._stopped:
            publisher = self._publisher
            idle = publisher is None or publisher.in_flight == 0
            try:
                command: Callable[[], None] | None = self._commands.get(
                    timeout=0.5 if idle else 0.02
                )
            except queue.Empty:
                command = None
            while command is not None and not self._stopped:
                try:
                    command()
                except Exception:
                    log.exception("the forecast producer's thread")
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    command = None
            publisher = self._publisher
            if publisher is not None and not self._stopped:
                publisher.poll(0 if idle else 0.05)
                if self._broken:
                    self._drop()

    def _open(self) -> None:
        self._ensure()

    def _ensure(self) -> ForecastPublisher:
        if self._publisher is None:
            self._publisher = ForecastPublisher(dict(self.publish.producer), self.publish.topic)
        return self._publisher

    def _send(self, forecast: Forecast, then: Callable[[Delivery], None]) -> None:
        def settled(delivery: Delivery) -> None:
            if delivery.fatal:
                self._broken = True
            then(delivery)

        try:
            publisher = self._ensure()
        except Exception as exc:
            delivery = Delivery(None, forecast.key, then)
            delivery.settle(error_text(exc))
            return
        publisher.send(forecast, settled)

    def _replace(self, publish: PublishConfig) -> None:
        self.publish = publish
        if self._publisher is not None:
            self._publisher.close(10.0)  # what is still in flight after that is sent again
            self._publisher = None

    def _drop(self) -> None:
        """Give the broken producer up; what it held is reported, and sent again."""
        self._broken = False
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            log.warning("the forecast producer failed fatally; replacing it")
            publisher.purge()


def forecast_message(result: TaskResult) -> Forecast:
    """The message for a finished task (built once: a resend is the same message)."""
    job, fit = result.job, result.fit
    return Forecast(
        store_id=job.store_id,
        item_id=job.item_id,
        generated_at=datetime.now(UTC),
        model_version=result.model_version,
        mlflow_run_id=result.run_id,
        method=fit.method,  # type: ignore[arg-type]
        warm=fit.warm,
        data_through=fit.data_through,
        data_version=job.version,
        horizon=len(fit.points),
        points=fit.points,  # type: ignore[arg-type]
        validation_mae=fit.validation_mae,
        validation_mase=fit.validation_mase,
        fallback_reason=fit.fallback_reason,
        family=fit.family,
        runner_up_family=fit.runner_up,
        runner_up_validation_mae=fit.runner_up_mae,
        group_model_version=result.group_version,
    )


def error_text(exc: BaseException) -> str:
    """An exception as one short line (a Ray task error as its cause)."""
    cause = getattr(exc, "cause", None) or exc
    text = f"{type(cause).__name__}: {cause}"
    return text if len(text) < 2000 else text[:2000] + "..."
