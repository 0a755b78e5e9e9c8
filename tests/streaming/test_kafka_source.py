"""The Python Kafka source against the real broker, tansu's end-offset quirk included."""

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition

from shelfcast.kafka import client_config
from shelfcast.settings import Settings
from streaming.kafka_source import KafkaRange, KafkaStreamReader, probe_true_ends, read_range
from streaming.source import _options

pytestmark = pytest.mark.integration


def reader(settings: Settings, **extra: str) -> KafkaStreamReader:
    return KafkaStreamReader({**_options(settings), **extra})


def test_true_end_is_found_where_watermarks_lie(
    make_settings: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = make_settings(topic_partitions=1)
    # linger batches many records into one record batch: tansu then reports its base + 1.
    produce(settings, [(b"k", b"v%d" % i) for i in range(300)], **{"linger.ms": 200})
    consumer = Consumer(
        {**client_config(settings), "group.id": "probe", "enable.partition.eof": True}
    )
    _low, high = consumer.get_watermark_offsets(TopicPartition(settings.topic_pos_sales, 0), 10)
    assert high < 300, "tansu's quirk: the watermark is the last batch's base offset + 1"
    assert probe_true_ends(consumer, settings.topic_pos_sales, {0: high}) == {0: 300}
    # Unfinished within its budget: left out, so the reader probes it again next trigger.
    assert probe_true_ends(consumer, settings.topic_pos_sales, {0: high}, budget=0.0) == {}
    consumer.close()

    source = reader(settings)
    start = source.initialOffset()
    assert start == {"0": 0}
    assert source.latestOffset(start, source.getDefaultReadLimit()) == {"0": 300}
    source.stop()


def test_trusting_watermarks_is_what_apache_kafka_would_allow(
    make_settings: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = make_settings(topic_partitions=1)
    produce(settings, [(b"k", b"v")] * 50, **{"linger.ms": 200})
    source = reader(settings, trustWatermarks="true")
    assert source.latestOffset({"0": 0}, source.getDefaultReadLimit())["0"] < 50
    source.stop()


def test_read_limit_and_ranges_cover_every_record_once(
    make_settings: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = make_settings(topic_partitions=2, ingest_max_events_per_batch=70)
    produce(settings, [(b"k%d" % (i % 5), b"%d" % i) for i in range(200)])
    source = reader(settings)
    start: dict[str, int] = source.initialOffset()
    seen: list[Any] = []
    for _ in range(10):
        end = source.latestOffset(start, source.getDefaultReadLimit())
        assert sum(end.values()) - sum(start.values()) <= 70
        for part in source.partitions(start, end):
            for batch in source.read(part):
                seen.extend(batch.column("value").to_pylist())
        start = end
    assert sorted(int(v) for v in seen) == list(range(200))
    source.stop()


def test_read_range_stops_at_its_end(
    make_settings: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = make_settings(topic_partitions=1)
    produce(settings, [(None, b"%d" % i) for i in range(40)])
    config = reader(settings).config
    batches = list(read_range(config, KafkaRange(settings.topic_pos_sales, 0, 10, 25)))
    table = pa.Table.from_batches(batches)
    assert table.column("offset").to_pylist() == list(range(10, 25))
