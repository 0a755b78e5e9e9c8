"""The coordinator's sinks: MLflow's wave runs and the forecast producer, on one I/O thread.

Both are created lazily on that thread (MLflow's store is created and migrated there, once),
and rebuilt there after the coordinator takes a new configuration. :meth:`Sinks.deliver`
publishes one forecast and returns only once Kafka confirmed it, sending it again after a
refusal.
"""

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from contracts.forecast import Forecast
from retrain.cluster.task import TaskResult
from retrain.config import CoordinatorConfig
from retrain.stores.publish import Delivery, ForecastPublisher
from retrain.stores.registry import GroupRecord, Tracker, redact

__all__ = ["Sinks", "error_text", "forecast_message"]

log = logging.getLogger("shelfcast.coordinator")

_SLOW_DELIVERY_SECONDS = 10

T = TypeVar("T")


class Sinks:
    """MLflow and Kafka for one coordinator; every call is made on its single I/O thread,
    so both see one caller, in order."""

    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelfcast-sink")
        self._tracker: Tracker | None = None
        self._publisher: ForecastPublisher | None = None
        self._wave_runs: dict[str, str] = {}  # wave id -> its MLflow run

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the I/O thread."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def reconfigure(self, config: CoordinatorConfig) -> None:
        """Take new addresses: both sinks are rebuilt at their next use."""
        self.config = config
        self._io.submit(self._reset)

    def _reset(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        self._tracker = self._publisher = None

    async def ready(self) -> None:
        """Open both now (raises when MLflow or Kafka cannot be reached)."""
        await self.run(self._ensure)

    def _ensure(self) -> tuple[Tracker, ForecastPublisher]:
        """MLflow (its store created and migrated here, once) and the forecast producer."""
        config = self.config
        if self._tracker is None:
            artifacts = config.artifact_dir
            if artifacts is not None:
                artifacts.mkdir(parents=True, exist_ok=True)
            self._tracker = Tracker(
                config.task.tracking_uri,
                config.task.experiment,
                None if artifacts is None else artifacts.as_uri(),
            )
        if self._publisher is None:
            self._publisher = ForecastPublisher(dict(config.publish.producer), config.publish.topic)
        return self._tracker, self._publisher

    # MLflow: one run per wave ---------------------------------------------------------------

    async def wave_run(self, wave_id: str) -> str:
        """The wave's MLflow run, started at its first series."""
        run_id = self._wave_runs.get(wave_id)
        if run_id is None:
            run_id = await self.run(self._start_wave, wave_id)
        return run_id

    async def group_champions(self) -> dict[str, GroupRecord]:
        """The group models MLflow serves (a restarted coordinator's starting point)."""
        return await self.run(lambda: self._ensure()[0].group_champions())

    def _start_wave(self, wave_id: str) -> str:
        tracker, _ = self._ensure()
        if wave_id not in self._wave_runs:
            self._wave_runs[wave_id] = tracker.start_wave(wave_id, {})
        return self._wave_runs[wave_id]

    @property
    def open_waves(self) -> list[str]:
        """The waves whose run is open."""
        return list(self._wave_runs)

    async def finish_wave(self, wave_id: str, totals: dict[str, float]) -> None:
        """Close the wave's run with its totals (once)."""
        run_id = self._wave_runs.pop(wave_id, None)
        if run_id is not None:
            await self.run(self._finish_wave, run_id, totals)

    def _finish_wave(self, run_id: str, totals: dict[str, float]) -> None:
        tracker, _ = self._ensure()
        tracker.finish_wave(run_id, totals)

    # Kafka: forecasts, confirmed ------------------------------------------------------------

    async def deliver(self, forecast: Forecast, report: Callable[[str], None]) -> None:
        """Publish ``forecast`` and return once Kafka confirmed it; ``report`` hears of a slow
        or refused delivery, in words for the operator.

        A Kafka outage retries the publish, never the task: each run of the task registers
        another model version, and its failures would poison a series that trained well.
        """
        delay = max(self.config.policy.backoff_seconds, 0.5)
        while True:
            try:
                delivery = await self.run(self._send, forecast)
                waited = 0
                while not await self.run(delivery.wait, 1.0):
                    waited += 1
                    if waited == _SLOW_DELIVERY_SECONDS:
                        report(
                            f"forecast not confirmed by Kafka for {waited} s; still waiting. "
                            "Check that Kafka at SHELFCAST_BOOTSTRAP_SERVERS is up."
                        )
                    await asyncio.sleep(0.1)  # other series' work shares the I/O thread
                error = delivery.error
            except Exception as exc:
                error = self.redacted(error_text(exc))
            if error is None:
                return
            report(f"forecast not delivered ({error}); sending again in {delay:g} s")
            log.warning("forecast for %s not delivered: %s", forecast.key, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    def _send(self, forecast: Forecast) -> Delivery:
        _, publisher = self._ensure()
        return publisher.send(forecast)

    def redacted(self, text: str) -> str:
        """An error's text without the stores' credentials: it is logged, and kept as the
        series' ``last_error`` in ``series_state``."""
        for uri in (self.config.task.optuna_url, self.config.task.tracking_uri):
            if uri:
                text = redact(text, uri)
        return text


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
