"""``shelfcast run`` as a process of its own, as an operator starts it: for every test that
runs, stops, signals or kills the service as a process (shutdown, fault injection, the
service killed mid-wave). :data:`FAST` is the retraining every service test runs with."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from retrain.cluster.client import COORDINATOR, connect
from shelfcast.retrain_config import ray_config
from shelfcast.settings import Settings

__all__ = ["FAST", "ServiceProcess", "last_handoff_at", "service_status", "services"]

# The service's settings in tests: few trials, a short horizon, no metrics port, quick idle
# ticks, a group model of one trial on two folds.
FAST: dict[str, Any] = {
    "retrain_cold_trials": 3,
    "retrain_warm_trials": 1,
    "retrain_horizon_days": 7,
    "retrain_uncertainty_samples": 20,
    "metrics_port": 0,
    "handoff_idle_seconds": 1.0,
    "retrain_group_cold_trials": 1,
    "retrain_group_warm_trials": 0,
    "retrain_group_folds": 2,
}


class ServiceProcess:
    """The service in its own process group on ``settings``; ``env`` adds or overrides
    ``SHELFCAST_*`` variables. Its output goes to ``service.log`` in its data dir."""

    def __init__(self, settings: Settings, **env: str) -> None:
        self.settings = settings
        self.log_path = settings.data_dir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            **{f"SHELFCAST_{k.upper()}": str(v) for k, v in FAST.items()},
            "SHELFCAST_RAY_ADDRESS": settings.ray_address,
            "SHELFCAST_RAY_NAMESPACE": settings.ray_namespace,
            "SHELFCAST_TOPIC_POS_SALES": settings.topic_pos_sales,
            "SHELFCAST_TOPIC_POS_PLANS": settings.topic_pos_plans,
            "SHELFCAST_TOPIC_POS_STORES": settings.topic_pos_stores,
            "SHELFCAST_TOPIC_DLQ": settings.topic_dlq,
            "SHELFCAST_TOPIC_FORECASTS": settings.topic_forecasts,
            "SHELFCAST_INGEST_TRIGGER_SECONDS": "0.5",
            "SHELFCAST_CONSOLE_PORT": "0",  # several services at once: no port to share
            **env,
        }

    def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shelfcast.cli",
                    "run",
                    "--data-dir",
                    str(self.settings.data_dir),
                    "--bootstrap",
                    self.settings.bootstrap_servers,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def batches(self) -> int:
        """The last micro-batch this process committed (its status file); -1 before one."""
        path = self.settings.run_dir / "service-status.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return -1
        batch = data.get("last_batch")
        return -1 if batch is None or data.get("stopped_at") else int(batch["batch_id"])

    def signal_and_time(self, sig: signal.Signals) -> tuple[float, float]:
        """Send ``sig``: (seconds until "stopping" is in the output, seconds until the exit)."""
        assert self.proc is not None
        seen = self.log_path.stat().st_size
        started = time.monotonic()
        self.proc.send_signal(sig)
        said = float("inf")
        while self.proc.poll() is None and time.monotonic() - started < 60:
            if said == float("inf") and b"stopping" in self.log_path.read_bytes()[seen:]:
                said = time.monotonic() - started
            time.sleep(0.02)
        exited = time.monotonic() - started
        if said == float("inf") and b"stopping" in self.log_path.read_bytes()[seen:]:
            said = exited
        return said, exited

    def kill9(self) -> None:
        """SIGKILL the whole process group (the service and its Spark JVM)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within 90 s; its exit code (None when
        it was not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(90)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _handed_over(self) -> bool:
        """Whether a hand-off gave Ray series: the recent waves keep it, while the last
        hand-off is soon one that only published."""
        status = service_status(self.settings)
        handoffs = [*(status.get("recent_handoffs") or []), status.get("last_handoff") or {}]
        return any(h.get("submitted") for h in handoffs)

    def wait_for_wave(self, timeout: float = 240.0) -> None:
        """Return once the service handed series to Ray (mid-wave: a fault strikes now);
        fail with its log if it dies or does not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._handed_over():
            assert self.alive(), self.log()
            assert time.monotonic() < deadline, "no wave started: " + self.log()
            time.sleep(0.5)


def services(
    ray_address: str, end: Callable[[ServiceProcess], None]
) -> Iterator[Callable[..., ServiceProcess]]:
    """A fixture body: make services on the session's Ray head; at the end ``end`` each (stop
    or kill it) and kill its coordinator actor."""
    import ray

    made: list[ServiceProcess] = []

    def make(settings: Settings, **env: str) -> ServiceProcess:
        svc = ServiceProcess(settings.model_copy(update={"ray_address": ray_address}), **env)
        # This process joins the session's head by its address: Ray's auto-init would look
        # for "a" local cluster, and hang or pick another when several run on the machine.
        connect(ray_config(svc.settings))
        made.append(svc)
        return svc

    yield make
    for svc in made:
        end(svc)
        connect(ray_config(svc.settings))  # this session's Ray head, not whichever started last
        try:
            ray.kill(ray.get_actor(COORDINATOR, namespace=svc.settings.ray_namespace))
        except ValueError:
            pass


def service_status(settings: Settings) -> dict[str, Any]:
    """The service's status file (what ``shelfcast status`` shows of it); empty before one."""
    try:
        data: dict[str, Any] = json.loads(settings.service_status_file.read_text())
    except (OSError, ValueError):
        return {}
    return data


def last_handoff_at(settings: Settings) -> datetime | None:
    """When the service's last hand-off (after a micro-batch, or an idle tick) ran."""
    at = (service_status(settings).get("last_handoff") or {}).get("at")
    return datetime.fromisoformat(at) if at else None
