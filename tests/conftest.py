"""Session fixtures: one real broker (Apache Kafka), one real Spark, one real Ray head per session
(and, for the tests that ask, one PostgreSQL with an MLflow server on it)."""

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Producer

from retrain.cluster.client import loopback_ray_env
from shelfcast.embedded import free_port, start_broker, start_ray, stop_process
from shelfcast.kafka import ensure_topics, producer_config
from shelfcast.settings import Settings, load_settings

if TYPE_CHECKING:
    from tests.postgres import MlflowServer, PostgresCluster

loopback_ray_env()

__all__ = ["demand", "free_port", "plan", "sale", "store_record", "write_daily"]


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An Apache Kafka broker (KRaft) on a free loopback port, stopped by pid at the end."""
    address = f"127.0.0.1:{free_port()}"
    settings = load_settings(data_dir=tmp_path_factory.mktemp("broker"), bootstrap_servers=address)
    proc = start_broker(settings)
    yield address
    stop_process(proc.pid)


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray head on loopback (2 CPUs) that this process joins once; stopped by pid at the end."""
    address = f"127.0.0.1:{free_port()}"
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("ray"), ray_address=address, ray_num_cpus=2
    )
    proc = start_ray(settings)
    yield address
    import ray

    ray.shutdown()
    stop_process(proc.pid, timeout=3.0)


@pytest.fixture(scope="session")
def postgres() -> Iterator["PostgresCluster"]:
    """A private PostgreSQL cluster (Debian's) on a free loopback port, with the two databases
    docker-compose.yml gives Shelfcast (``optuna``, ``mlflow``), each with its own user and
    password; stopped by pid at the end."""
    from tests.postgres import DATABASES, postgres_cluster

    with postgres_cluster() as cluster:
        for name in DATABASES:
            cluster.create_database(name)
        yield cluster


@pytest.fixture(scope="session")
def mlflow_server(
    postgres: "PostgresCluster", tmp_path_factory: pytest.TempPathFactory
) -> Iterator["MlflowServer"]:
    """``mlflow server`` on the session's PostgreSQL, artifacts in a local folder, as
    docker-compose.yml runs it; stopped by pid at the end."""
    from tests.postgres import mlflow_server as start

    with start(postgres.databases["mlflow"], tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture
def make_settings(bootstrap: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on the session broker with topics of their own (random names), created."""

    def make(**overrides: Any) -> Settings:
        tag = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "data_dir": tmp_path / f"data-{tag}",
            "bootstrap_servers": bootstrap,
            "topic_pos_sales": f"pos-{tag}",
            "topic_pos_plans": f"plans-{tag}",
            "topic_pos_stores": f"stores-{tag}",
            "topic_dlq": f"dlq-{tag}",
            "topic_forecasts": f"fc-{tag}",
            "ingest_trigger_seconds": 0.5,
            "ray_namespace": f"test-{tag}",
            "console_port": 0,  # a test that opens the console gives it a free port
        }
        values.update(overrides)
        settings = load_settings(**values)
        ensure_topics(settings)
        return settings

    return make


# Retraining small enough for tests: a few trials, short horizon and history, quick retries.
RETRAIN_FAST = {
    "retrain_cold_trials": 4,
    "retrain_warm_trials": 1,
    "retrain_horizon_days": 14,
    "retrain_history_days": 365,
    "retrain_uncertainty_samples": 20,
    "retrain_retry_backoff_seconds": 0.2,
    "retrain_max_attempts": 2,
    "retrain_group_cold_trials": 1,
    "retrain_group_warm_trials": 0,
    "retrain_group_folds": 2,
}


@pytest.fixture
def retrain_settings(
    make_settings: Callable[..., Settings], ray_address: str
) -> Iterator[Callable[..., Settings]]:
    """Settings on the session's Ray head with :data:`RETRAIN_FAST`; every coordinator (and
    shard) they create is killed after."""
    made: list[Settings] = []

    def make(**overrides: Any) -> Settings:
        settings = make_settings(ray_address=ray_address, **{**RETRAIN_FAST, **overrides})
        made.append(settings)
        return settings

    yield make
    import ray

    from retrain.cluster.client import COORDINATOR

    for settings in made:
        for name in ray.util.list_named_actors(all_namespaces=True):
            if name["namespace"] == settings.ray_namespace and name["name"].startswith(COORDINATOR):
                ray.kill(ray.get_actor(name["name"], namespace=settings.ray_namespace))


@pytest.fixture
def produce() -> Callable[..., int]:
    """Send raw (key, value) pairs or event dicts to a topic; waits for delivery."""

    def send(
        settings: Settings,
        records: list[Any],
        topic: str | None = None,
        **config: Any,
    ) -> int:
        producer = Producer(producer_config(settings, **config))
        for record in records:
            if isinstance(record, dict):
                key: Any = f"{record.get('store_id')}|{record.get('item_id')}"
                value: Any = json.dumps(record)
            else:
                key, value = record
            producer.produce(topic or settings.topic_pos_sales, key=key, value=value)
            producer.poll(0)
        assert producer.flush(30) == 0
        return len(records)

    return send


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark for the whole session (start-up costs seconds)."""
    from shelfcast.ingest_config import spark_config
    from streaming.spark import spark_session

    session = spark_session(spark_config(load_settings()))
    yield session
    session.stop()


def sale(
    event_id: str,
    store: str = "S1",
    item: str = "I1",
    day: str = "2024-03-04",
    quantity: float = 1.0,
    **extra: Any,
) -> dict[str, Any]:
    """A valid pos_sale v1 event."""
    return {
        "event_id": event_id,
        "store_id": store,
        "item_id": item,
        "sold_at": f"{day}T10:00:00+00:00",
        "quantity": quantity,
        **extra,
    }


def plan(
    plan_id: str,
    revision: int = 1,
    store: str = "S1",
    item: str = "*",
    start: str = "2024-03-20",
    days: int = 7,
    kind: str = "promotion",
    **extra: Any,
) -> dict[str, Any]:
    """A valid plan v1 message (``days`` from ``start``)."""
    first = date.fromisoformat(start)
    return {
        "plan_id": plan_id,
        "revision": revision,
        "store_id": store,
        "item_id": item,
        "start_date": first.isoformat(),
        "end_date": (first + timedelta(days=days - 1)).isoformat(),
        "kind": kind,
        "published_at": "2024-03-04T08:00:00+00:00",
        **extra,
    }


def store_record(store: str = "S1", revision: int = 1, **extra: Any) -> dict[str, Any]:
    """A valid store v1 message."""
    return {
        "store_id": store,
        "revision": revision,
        "country": "DE",
        "subdivision": "NW",
        "open_weekdays": [1, 2, 3, 4, 5, 6],
        "published_at": "2024-03-01T08:00:00+00:00",
        **extra,
    }


def write_daily(
    settings: Settings, series: dict[tuple[str, str], np.ndarray], start: date, batch_id: int = 0
) -> int:
    """Put daily units per series into ``daily_sales`` (as the ingest would); its new version."""

    from streaming.schemas import DAILY_SALES
    from streaming.tables import TableStore

    store = TableStore(settings.delta_dir)
    store.ensure()
    rows: dict[str, list[Any]] = {
        k: [] for k in ("store_id", "item_id", "day", "units", "revenue", "returns")
    }
    for (store_id, item_id), values in series.items():
        for k, value in enumerate(values):
            rows["store_id"].append(store_id)
            rows["item_id"].append(item_id)
            rows["day"].append(start + timedelta(days=k))
            rows["units"].append(float(value))
            rows["revenue"].append(0.0)
            rows["returns"].append(0.0)
    n = len(rows["day"])
    table = pa.table(
        {**rows, "event_count": [1] * n, "updated_batch_id": [batch_id] * n},
        schema=DAILY_SALES,
    )
    store.add_daily_once(table, "tests", batch_id)
    return int(store.table("daily_sales").version())


def demand(days: int, level: float = 20.0, seed: int = 0) -> np.ndarray:
    """A real-shaped daily series: weekly and yearly cycle, trend, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    weekly = 1 + 0.3 * np.sin(2 * np.pi * t / 7)
    yearly = 1 + 0.2 * np.sin(2 * np.pi * t / 365.25)
    return np.round(rng.poisson(level * weekly * yearly * (1 + t / 2000))).astype(float)


def read_topic(settings: Settings, topic: str, expect: int, timeout: float = 60.0) -> list[Any]:
    """Every message on ``topic`` from the start, waiting until ``expect`` arrived (or timeout);
    then 1 s more so that extra (unwanted) messages show up too."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    from shelfcast.kafka import client_config

    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"test-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    settle: float | None = None
    while time.monotonic() < deadline:
        if len(out) >= expect:
            settle = settle or time.monotonic() + 1.0
            if time.monotonic() > settle:
                break
        for msg in consumer.consume(100, 0.2):
            if msg.error() is None:
                out.append(msg)
    consumer.close()
    return out
