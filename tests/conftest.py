"""The fixtures every package shares: one real broker (Apache Kafka), one real Spark and one
real Ray head per session (and, for the tests that ask, one PostgreSQL with an MLflow server
on it), settings on them with topics of their own, the service in a thread or as a process of
its own, and docker-compose.yml. Helpers that are not fixtures live in ``tests/support``."""

import contextlib
import gc
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from confluent_kafka import Producer

from retrain.cluster.client import loopback_ray_env
from shelfcast.embedded import (
    client_jit_options,
    free_port,
    start_broker,
    stop_process,
)
from shelfcast.kafka import ensure_topics, producer_config
from shelfcast.settings import Settings, load_settings
from streaming.kafka_source import close_readers
from tests.support.durations import FileDurations, longest_files_first
from tests.support.ray_head import running_head
from tests.support.retrain import IN_PROCESS, RETRAIN_FAST
from tests.support.service import FAST, ServiceProcess, services

if TYPE_CHECKING:
    from bench.postgres import MlflowServer, PostgresCluster

loopback_ray_env()

# Every JVM of the suite (brokers, Spark drivers, a standalone cluster) lives seconds to a
# minute, so the client JIT is all it uses, as the demo's do; C2's compiler threads were ~28 %
# of the CPU of the kill -9 ingest tests (135 core-s against 97), CPU that every test beside
# them shares on 2 cores.
os.environ["JAVA_TOOL_OPTIONS"] = client_jit_options(os.environ.get("JAVA_TOOL_OPTIONS", ""))

ROOT = Path(__file__).resolve().parents[1]
_DURATIONS = FileDurations()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-durations",
        action="store_true",
        help="store each test file's seconds in tests/durations.json (the order files run "
        "in) when the run passes whole",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Longest files first: xdist's workers then end together (tests/support/durations.py).
    items[:] = longest_files_first(items, _DURATIONS.load())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _DURATIONS.add(report.nodeid, report.duration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The controller's reports cover every worker's tests; a worker stores nothing. Only a
    # run that went through (no -x stop, Ctrl-C or -k subset) knows each file's whole time.
    config = session.config
    if (
        config.getoption("store_durations")
        and not hasattr(config, "workerinput")
        and exitstatus == pytest.ExitCode.OK
        and not config.getoption("keyword")
    ):
        _DURATIONS.store(ROOT)


@pytest.fixture(autouse=True)
def _mlflow_client_retries() -> Iterator[None]:
    """Put MLflow's retry variables back after each test: a ``Tracker`` given
    ``mlflow_retries`` sets them for its whole process."""
    names = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An Apache Kafka broker (KRaft) on a free loopback port, stopped by pid at the end."""
    address = f"127.0.0.1:{free_port()}"
    settings = load_settings(data_dir=tmp_path_factory.mktemp("broker"), bootstrap_servers=address)
    proc = start_broker(settings)
    try:
        yield address
        # The clients this process still holds (a range reader's cached consumer, producers
        # that reference cycles keep until a collection, any other still referenced) would
        # log a refused connection every 50 ms to the end of the run once their broker is
        # gone, and xdist keeps a worker that is done alive until the others are (1,754 such
        # lines in one run with three workers).
        close_readers()
        gc.collect()
        for leftover in [o for o in gc.get_objects() if isinstance(o, Producer)]:
            with contextlib.suppress(Exception):  # closed already
                leftover.purge()
                leftover.close()
    finally:
        stop_process(proc.pid)


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray head on loopback that this process joins once; stopped by pid at the end.

    Its CPUs are this worker's share of the machine's (at most 2, at least 1): 1 each for
    ``scripts/test``'s three xdist workers on 2 cores. With 2 each, every coordinator started
    a worker per CPU, each importing the retrain stack (~6 CPU-s), for work that one worker
    does in the same time on a busy machine: with two xdist workers, the suite's Ray workers
    went from ~130 to ~100 and its CPU from ~1,960 to ~1,620 s (docs/benchmarks.md). Tests
    whose claim is about two tasks side by side take :func:`two_cpus`."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cpus = min(2, max(1, (os.cpu_count() or 2) // workers))
    with running_head(tmp_path_factory.mktemp("ray"), cpus) as address:
        yield address


@pytest.fixture
def two_cpus(tmp_path: Path) -> Iterator[str]:
    """A Ray head of its own with 2 CPUs, for a test about two tasks side by side; this
    process joins it in place of the session's head (the next test joins that one again).
    Ask for it before ``retrain_settings``, whose end then kills the coordinators on it."""
    import ray

    ray.shutdown()
    with running_head(tmp_path / "ray-2cpus", 2) as address:
        yield address


@pytest.fixture(scope="session")
def postgres() -> Iterator["PostgresCluster"]:
    """A private PostgreSQL cluster (Debian's) on a free loopback port, with the two databases
    docker-compose.yml gives Shelfcast (``optuna``, ``mlflow``), each with its own user and
    password; stopped by pid at the end."""
    from bench.postgres import DATABASES, postgres_cluster

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
    from bench.postgres import mlflow_server as start

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


@pytest.fixture
def retrain_settings(
    make_settings: Callable[..., Settings], ray_address: str
) -> Iterator[Callable[..., Settings]]:
    """Settings on the session's Ray head with
    :data:`~tests.support.retrain.RETRAIN_FAST`; every coordinator (and shard) they create is
    killed after."""
    made: list[Settings] = []

    def make(**overrides: Any) -> Settings:
        # ray_address=two_cpus overrides the session's head.
        settings = make_settings(
            **{"ray_address": ray_address, **RETRAIN_FAST, **IN_PROCESS, **overrides}
        )
        made.append(settings)
        return settings

    yield make
    import ray

    from retrain.cluster.client import COORDINATOR

    if not ray.is_initialized():
        return  # its head was stopped first (two_cpus set up after this), its actors with it
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
                # Each contract's own key: a plan's id, a store's id, a sale's series.
                key: Any = (
                    record["plan_id"]
                    if "plan_id" in record
                    else record["store_id"]
                    if "open_weekdays" in record
                    else f"{record.get('store_id')}|{record.get('item_id')}"
                )
                value: Any = json.dumps(record)
            else:
                key, value = record
            producer.produce(topic or settings.topic_pos_sales, key=key, value=value)
            producer.poll(0)
        assert producer.flush(30) == 0
        return len(records)

    return send


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Spark for the whole session (start-up costs seconds)."""
    from shelfcast.ingest_config import spark_config
    from streaming.spark import spark_session

    settings = load_settings(data_dir=tmp_path_factory.mktemp("spark"))
    session = spark_session(spark_config(settings))
    yield session
    session.stop()


@pytest.fixture
def service(
    spark: Any, make_settings: Callable[..., Settings], ray_address: str
) -> Iterator[Callable[..., Settings]]:
    """Start ``run_service`` in a thread on fresh settings (:data:`~tests.support.service.FAST`
    and the overrides given); stopped (and its actor killed) after."""
    from shelfcast.service import run_service

    running: list[tuple[threading.Event, threading.Thread, Settings]] = []

    def start(**overrides: Any) -> Settings:
        settings = make_settings(ray_address=ray_address, **{**FAST, **IN_PROCESS, **overrides})
        stop = threading.Event()
        thread = threading.Thread(target=run_service, args=(settings, stop), daemon=True)
        thread.start()
        running.append((stop, thread, settings))
        return settings

    yield start
    import ray

    from retrain.cluster.client import COORDINATOR

    for stop, thread, settings in running:
        stop.set()
        thread.join(60)
        try:
            ray.kill(ray.get_actor(COORDINATOR, namespace=settings.ray_namespace))
        except ValueError:
            pass


@pytest.fixture
def service_on(ray_address: str) -> Iterator[Callable[..., ServiceProcess]]:
    """Make services as processes of their own (``shelfcast run``) on the session's Ray head;
    each is stopped and its coordinator actor killed at the end."""
    yield from services(ray_address, ServiceProcess.stop)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded
