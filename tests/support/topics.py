"""What a topic holds, read from its start."""

import time
import uuid
from typing import Any

from contracts import parse_forecast
from shelfcast.settings import Settings

__all__ = ["forecast_keys", "read_topic", "recreate_sales_topic"]


def read_topic(settings: Settings, topic: str, expect: int, timeout: float = 60.0) -> list[Any]:
    """Every message on ``topic`` from the start, waiting until ``expect`` arrived (or timeout);
    then 1 s more so that extra (unwanted) messages show up too."""
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


def forecast_keys(settings: Settings, expect: int, timeout: float = 120) -> list[str]:
    """The series keys of the forecasts on the forecast topic (see :func:`read_topic`)."""
    messages = read_topic(settings, settings.topic_forecasts, expect, timeout)
    return [parse_forecast(m.value()).key for m in messages]


def recreate_sales_topic(settings: Settings, timeout: float = 60.0) -> None:
    """Delete the sales topic and create it again, empty (offsets start over at 0)."""
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    from shelfcast.kafka import client_config, ensure_topics

    topic = settings.topic_pos_sales
    admin = AdminClient(client_config(settings))
    for future in admin.delete_topics([topic]).values():
        future.result(30)
    deadline = time.monotonic() + timeout
    # Deletion is asynchronous: until the broker's metadata drops the name, ensure_topics
    # finds it and creates nothing; until the deletion completes, creating it is refused.
    created = False
    while True:
        try:
            if not created and topic not in admin.list_topics(timeout=10).topics:
                ensure_topics(settings)
                created = True
            if created:
                meta = admin.list_topics(topic, timeout=10).topics.get(topic)
                if meta is not None and meta.error is None and meta.partitions:
                    return
        except Exception:
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, f"{topic} not recreated within {timeout:g} s"
        time.sleep(0.2)
