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
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from contracts.forecast import Forecast
from retrain.cluster.outages import error_text
from retrain.cluster.tables import SeriesTables
from retrain.cluster.task import TaskResult
from retrain.config import CoordinatorConfig, PublishConfig
from retrain.stores.publish import Delivery, ForecastPublisher
from retrain.stores.registry import GroupRecord, Tracker, redact

__all__ = ["Outbox", "Sinks", "forecast_message"]

log = logging.getLogger("shelfcast.coordinator")

# A forecast not confirmed this long is reported, then again every _STILL_WAITING_SECONDS.
_SLOW_DELIVERY_SECONDS = 10.0
_STILL_WAITING_SECONDS = 60.0

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
        self.tables = SeriesTables()  # each open wave's series rows not stored yet

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
            run_id = tracker.start_wave(wave_id, {})
            self.tables.open(run_id)
            self._wave_runs[wave_id] = run_id
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
            return
        try:
            await self._on_mlflow(self._finish_wave, run_id, totals)
        except Exception as exc:
            self._wave_runs.setdefault(wave_id, run_id)
            log.warning("the MLflow run of wave %s not closed yet: %s", wave_id, exc)

    def _finish_wave(self, run_id: str, totals: dict[str, float]) -> None:
        """The run's rows in parts, then its totals; whatever fails is given back whole."""
        number, rows = self.tables.close(run_id)  # rows added from now on are late
        size = self.tables.part_rows
        for start in range(0, len(rows), size):
            try:
                self._ensure().log_series_table(run_id, rows[start : start + size], _part(number))
            except BaseException:
                self.tables.give_back(run_id, number, rows[start:])
                raise
            number += 1
        try:
            self._ensure().finish_wave(run_id, totals)
        except BaseException:
            self.tables.give_back(run_id, number, [])
            raise

    def add_row(self, run_id: str, row: dict[str, Any]) -> None:
        """A series' row for the series table of wave run ``run_id`` (the run its task was
        given); a full part goes to MLflow on the MLflow thread, which the result does not
        wait for."""
        held = self.tables.add(run_id, row)
        if held == "full":
            self._mlflow.submit(self._store_parts, run_id)
        elif held == "late":
            self._mlflow.submit(self._store_late, run_id, row)

    def _store_parts(self, run_id: str) -> None:
        """The run's full parts, until it has none (on the MLflow thread)."""
        while (taken := self.tables.take(run_id)) is not None:
            number, part = taken
            try:
                self._ensure().log_series_table(run_id, part, _part(number))
            except Exception as exc:  # kept: tried again later, or at the wave's end
                self.tables.give_back(run_id, number, part)
                self.tables.failed(run_id)
                log.warning("the series table of run %s not stored yet: %s", run_id, exc)
                return

    def _store_late(self, run_id: str, row: dict[str, Any]) -> None:
        """A row of a run already closed (its series moved to a later wave while its task
        ran): a part of its own, tried once."""
        try:
            self._ensure().log_series_table(run_id, [row], f"late-{uuid.uuid4().hex[:12]}")
        except Exception as exc:
            log.warning("a late row of run %s not stored: %s", run_id, exc)

    # Kafka: forecasts, confirmed ------------------------------------------------------------

    async def deliver(self, forecast: Forecast, report: Callable[[str], None]) -> None:
        """Publish ``forecast`` and return once Kafka confirmed it; ``report`` hears of a slow
        or refused delivery, in words for the operator.

        A Kafka outage waits for the broker (the producer retries the same message), never
        retries the task: each run of the task takes another serial (and may register another
        model version), and its failures would poison a series that trained well.
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


def _part(number: int) -> str:
    return f"part-{number:05d}"


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
