"""The Ray edge: join the long-lived cluster and find (or create) the coordinator by name."""

import logging
import os
from typing import Any

from retrain.errors import RetrainError

__all__ = [
    "COORDINATOR",
    "CoordinatorClient",
    "connect",
    "coordinator",
    "daily_version",
    "loopback_ray_env",
]

COORDINATOR = "shelfcast-coordinator"


def loopback_ray_env() -> None:
    """Keep a loopback Ray address on loopback; call before ``import ray``.

    Ray rewrites 127.0.0.1 to the machine's outward IP unless this (oddly named) switch is off,
    and the embedded head listens on loopback only. Ray's and MLflow's usage reports are off
    unless the environment turns them on: the processes started from here (the Ray head, its
    workers) inherit it.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def connect(settings: Any) -> None:
    """Join the cluster at ``settings.ray_address`` in our namespace (once per process)."""
    host = settings.ray_address.rpartition(":")[0]
    if host in ("127.0.0.1", "localhost", "::1"):
        loopback_ray_env()
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(
            address=settings.ray_address,
            namespace=settings.ray_namespace,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RetrainError(
            f"Cannot join the Ray cluster at {settings.ray_address}: {exc}. Start the embedded "
            "one with 'shelfcast up', or set SHELFCAST_RAY_ADDRESS to your cluster's head."
        ) from exc


def coordinator(settings: Any) -> Any:
    """The coordinator actor, created detached on first use; later calls reconnect to it."""
    connect(settings)
    import ray

    from retrain.coordinator import Coordinator

    actor = (
        ray.remote(Coordinator)
        .options(
            name=COORDINATOR,
            namespace=settings.ray_namespace,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=1000,
        )
        .remote(settings)
    )
    ray.get(actor.ping.remote(), timeout=60)  # type: ignore[attr-defined]
    ray.get(actor.configure.remote(settings), timeout=60)  # type: ignore[attr-defined]
    return actor


def daily_version(settings: Any) -> int:
    """The latest version of ``daily_sales`` (what a wave started by hand reads)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = str(settings.delta_dir / "daily_sales")
    try:
        return int(DeltaTable(uri).version())
    except TableNotFoundError as exc:
        raise RetrainError(
            f"No daily_sales table at {uri}: run 'shelfcast ingest' first, or check --data-dir."
        ) from exc


class CoordinatorClient:
    """The streaming side's handle on the coordinator: submit without waiting, read news.

    Finds the actor lazily and again after it was lost (a restarted Ray head).
    """

    def __init__(self, settings: Any, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._actor: Any = None

    def actor(self) -> Any:
        if self._actor is None:
            self._actor = coordinator(self.settings)
        return self._actor

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        try:
            return ray.get(getattr(self.actor(), method).remote(*args), timeout=self.timeout)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            self._actor = None
            raise RetrainError(f"The retrain coordinator did not answer {method}: {exc}") from exc

    def submit(self, due: list[tuple[str, str, float]], version: int) -> None:
        # Fire and forget: the micro-batch never waits on Ray; coalescing makes a resend safe.
        self.actor().submit.remote(due, version)

    def peek_updates(self) -> list[dict[str, Any]]:
        updates: list[dict[str, Any]] = self._call("peek_updates")
        return updates

    def ack_updates(self, seq: int) -> None:
        self.actor().ack_updates.remote(seq)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._call("status")
        return status
