"""The retrain side's typed configuration, as plain frozen data.

``retrain`` never reads the application's settings: the application builds these from them,
in one place, and hands each part only to what uses it. A driver joins Ray with
:class:`RayConfig`; the coordinator actor holds a :class:`CoordinatorConfig` (the Kafka
producer's options among it, as it publishes); each retrain task gets only the
:class:`~retrain.cluster.task.TaskSpec` inside it (the stores it writes, no Kafka).

Credentials (the Optuna and MLflow store URLs, the producer's SASL password) stay out of
every repr: these objects show in Ray's errors and logs.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.cluster.policy import RetryPolicy

if TYPE_CHECKING:
    # Named only: importing the task imports the kernel (Prophet, statsforecast), which a
    # driver that only reads the coordinators' status does not need.
    from retrain.cluster.task import TaskSpec

__all__ = ["CoordinatorConfig", "PublishConfig", "RayConfig", "RetrainConfig"]


@dataclass(frozen=True)
class RayConfig:
    """The long-lived Ray cluster a driver joins, and where its coordinators live."""

    address: str
    namespace: str = "shelfcast"
    # A node advertising this custom resource gets the coordinators; empty: any node.
    coordinator_resource: str = "shelfcast_coordinator"
    # The queue split over this many named coordinators, by series key.
    coordinator_shards: int = 1
    # Detached: a coordinator outlives the driver that made it (a service restart finds it
    # with its queue). Not detached: it dies with that driver, and the Ray workers its tasks
    # used stay with the driver's job for the next coordinator it makes, where Ray ends a
    # detached actor's workers with it (each start then pays for fresh workers and imports).
    coordinator_detached: bool = True


@dataclass(frozen=True)
class PublishConfig:
    """The forecasts topic and the producer's librdkafka options, built by the application
    (address, security, idempotence). They may carry the SASL password: never shown."""

    topic: str
    producer: Mapping[str, Any] = field(repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return str(self.producer.get("bootstrap.servers", ""))


@dataclass(frozen=True)
class CoordinatorConfig:
    """What a coordinator actor holds: its tables, its retry policy, the spec it hands every
    task, where MLflow keeps artifacts, and where forecasts go."""

    # The service's data folder: drivers that share a coordinator must agree on it.
    data_dir: Path
    delta_dir: Path
    task: "TaskSpec"
    policy: RetryPolicy
    publish: PublishConfig
    # Created for a local MLflow store (never ./mlruns); None: the tracking server's own.
    artifact_dir: Path | None = None
    # Series one task retrains in turn, at most (retrain/cluster/batches.py), and about how
    # many seconds of them, by their recent mean.
    batch_size: int = 32
    batch_seconds: float = 2.0


@dataclass(frozen=True)
class RetrainConfig:
    """Everything the retrain side takes from the application."""

    ray: RayConfig
    coordinator: CoordinatorConfig

    @property
    def shards(self) -> int:
        return max(1, self.ray.coordinator_shards)
