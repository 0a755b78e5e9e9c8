"""Session fixtures: one real broker (tansu) and one real Spark per test session."""

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from shelfcast.embedded import start_broker, stop_process
from shelfcast.kafka import ensure_topics, producer_config
from shelfcast.settings import Settings, load_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tansu broker on a free loopback port, stopped by pid at the end."""
    address = f"127.0.0.1:{free_port()}"
    settings = load_settings(data_dir=tmp_path_factory.mktemp("broker"), bootstrap_servers=address)
    proc = start_broker(settings)
    yield address
    stop_process(proc.pid)


@pytest.fixture
def make_settings(bootstrap: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on the session broker with topics of their own (random names), created."""

    def make(**overrides: Any) -> Settings:
        tag = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "data_dir": tmp_path / f"data-{tag}",
            "bootstrap_servers": bootstrap,
            "topic_pos_sales": f"pos-{tag}",
            "topic_dlq": f"dlq-{tag}",
            "topic_forecasts": f"fc-{tag}",
            "ingest_trigger_seconds": 0.5,
        }
        values.update(overrides)
        settings = load_settings(**values)
        ensure_topics(settings)
        return settings

    return make


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
    from streaming.spark import spark_session

    session = spark_session(load_settings())
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
