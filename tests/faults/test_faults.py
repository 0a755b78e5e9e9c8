"""Fault injection on real parts: the service runs as its own process (``shelfcast run``) on a
real broker, Spark, Ray and MLflow store; a fault strikes mid-stream; then every invariant of
:mod:`tests.support.invariants` must hold and the service must still run."""

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shelfcast.embedded import free_port, start_broker, stop_process, wait_for_port
from shelfcast.kafka import ensure_topics
from shelfcast.settings import Settings
from shelfcast.status import coordinator_status
from tests.support.events import histories
from tests.support.invariants import settled, stored
from tests.support.service import FAST, ServiceProcess
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_service_killed_at_random_points_over_several_rounds(
    make_settings: Callable[..., Settings],
    service_on: Callable[..., ServiceProcess],
    produce: Callable[..., int],
) -> None:
    rng = random.Random(7)
    settings = make_settings(**FAST)
    svc = service_on(settings)
    events = histories(5, 60, "k")
    chunks = [events[k::4] for k in range(4)]
    produced: list[dict[str, Any]] = []
    for round_ in range(3):
        svc.start()
        produce(settings, chunks[round_] + produced[:20])  # new events, and POS resends
        produced += chunks[round_]
        time.sleep(rng.uniform(4.0, 12.0))  # mid-batch, mid-wave or idle: wherever it lands
        svc.kill9()
    svc.start()
    produce(settings, chunks[3])
    produced += chunks[3]
    settled(settings, produced, 300, svc.alive)
    assert svc.alive(), svc.log()


def test_broker_stopped_and_restarted_mid_stream(
    make_settings: Callable[..., Settings],
    service_on: Callable[..., ServiceProcess],
    produce: Callable[..., int],
    tmp_path: Path,
) -> None:
    broker_settings = make_settings(data_dir=tmp_path / "broker").model_copy(
        update={"bootstrap_servers": f"127.0.0.1:{free_port()}"}
    )
    broker = start_broker(broker_settings)
    try:
        settings = broker_settings.model_copy(update={"data_dir": tmp_path / "svc", **FAST})
        ensure_topics(settings)
        svc = service_on(settings)
        svc.start()
        events = histories(4, 60, "b")
        produce(settings, events[: len(events) // 2])
        # Mid-stream: once the service stores events (a broker gone while it starts is a
        # start-up error, reported as such).
        stored(settings, 120, svc.alive)
        stop_process(broker.pid)  # SIGTERM: Kafka's controlled shutdown
        time.sleep(10)  # the service keeps running without its broker
        assert svc.alive(), svc.log()
        broker = start_broker(broker_settings)
        host, port = settings.bootstrap_servers.split(":")
        assert wait_for_port(host, int(port), 30)
        produce(settings, events[len(events) // 2 :])
        settled(settings, events, 300, svc.alive)
        svc.stop()  # while its broker is still there to flush to
    finally:
        stop_process(broker.pid)


def _mlflow_server(store: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination",
                str(store / "artifacts"),
                "--workers",
                "1",
            ],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _waiting_for_mlflow(settings: Settings) -> bool:
    """Whether ``shelfcast status`` lists series waiting for MLflow (an outage, not their
    failure)."""
    return "MLflow" in (coordinator_status(settings).get("outages") or {})


def test_mlflow_unavailable_until_retrains_wait_for_it(
    make_settings: Callable[..., Settings],
    service_on: Callable[..., ServiceProcess],
    produce: Callable[..., int],
    tmp_path: Path,
) -> None:
    port = free_port()
    store = tmp_path / "mlflow"
    store.mkdir()
    server = _mlflow_server(store, port, tmp_path / "mlflow.log")
    try:
        assert wait_for_port("127.0.0.1", port, 90), (tmp_path / "mlflow.log").read_text()
        uri = f"http://127.0.0.1:{port}"
        # No client retries: the first refused call is the outage (3 would wait ~12 s more).
        settings = make_settings(**FAST, mlflow_tracking_uri=uri, mlflow_retries=0)
        svc = service_on(settings, SHELFCAST_MLFLOW_TRACKING_URI=uri, SHELFCAST_MLFLOW_RETRIES="0")
        svc.start()
        events = histories(4, 60, "m")
        produce(settings, events[: len(events) // 2])
        stored(settings, 120, svc.alive)  # mid-stream
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)
        produce(settings, events[len(events) // 2 :])
        wait_for(lambda: _waiting_for_mlflow(svc.settings), 180, "a retrain waiting for MLflow")
        assert svc.alive(), svc.log()
        server = _mlflow_server(store, port, tmp_path / "mlflow.log")
        assert wait_for_port("127.0.0.1", port, 90)
        settled(settings, events, 400, svc.alive)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)


def test_a_record_at_the_brokers_message_limit_mid_stream(
    make_settings: Callable[..., Settings],
    service_on: Callable[..., ServiceProcess],
    produce: Callable[..., int],
) -> None:
    from deltalake import DeltaTable

    settings = make_settings(**FAST)
    svc = service_on(settings)
    svc.start()
    events = histories(3, 40, "q")
    big = os.urandom(990_000)  # just under the producer's and broker's ~1 MB default
    produce(settings, events[: len(events) // 2])
    produce(settings, [(None, big)])
    produce(settings, events[len(events) // 2 :])
    settled(settings, events, 300, svc.alive)
    quarantine = DeltaTable(str(settings.delta_dir / "quarantine")).to_pyarrow_table()
    assert quarantine.column("raw_value").to_pylist() == [big]  # kept whole, not the copy
