"""The Python Kafka source against the real broker (Apache Kafka)."""

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from shelfcast.ingest_config import source_config
from shelfcast.settings import Settings
from streaming.errors import KafkaSourceError
from streaming.kafka_source import KafkaRange, KafkaStreamReader, close_readers, read_range
from tests.support.topics import recreate_sales_topic

pytestmark = pytest.mark.integration


def reader(settings: Settings, **extra: str) -> KafkaStreamReader:
    config = source_config(settings)
    options = {**config.options("librdkafka"), "subscribe": settings.topic_pos_sales}
    return KafkaStreamReader({**options, **extra})


def test_end_offsets_are_the_brokers_watermarks(
    make_settings: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = make_settings(topic_partitions=1)
    produce(settings, [(b"k", b"v%d" % i) for i in range(300)], **{"linger.ms": 200})
    source = reader(settings)
    start = source.initialOffset()
    assert start == {"0": 0}
    assert source.latestOffset(start, source.getDefaultReadLimit()) == {"0": 300}
    source.stop()


def test_offsets_that_go_backwards_fail_with_what_to_do(
    make_settings: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = make_settings(topic_partitions=1)
    produce(settings, [(None, b"%d" % i) for i in range(50)])
    recreate_sales_topic(settings)
    produce(settings, [(None, b"new%d" % i) for i in range(5)])
    source = reader(settings)
    with pytest.raises(KafkaSourceError, match="SHELFCAST_INGEST_ON_DATA_LOSS=earliest"):
        source.latestOffset({"0": 50}, source.getDefaultReadLimit())
    source.stop()


def test_offsets_that_go_backwards_resume_from_earliest_when_asked(
    make_settings: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = make_settings(topic_partitions=1, ingest_on_data_loss="earliest")
    produce(settings, [(None, b"%d" % i) for i in range(50)])
    recreate_sales_topic(settings)
    produce(settings, [(None, b"new%d" % i) for i in range(5)])
    source = reader(settings)
    start = {"0": 50}
    end = source.latestOffset(start, source.getDefaultReadLimit())
    assert end == {"0": 5}
    values = [
        v
        for part in source.partitions(start, end)
        for b in source.read(part)
        for v in b.column("value").to_pylist()
    ]
    assert values == [b"new%d" % i for i in range(5)]
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
    close_readers()  # the process's cached consumer closed: the next range opens another
    again = pa.Table.from_batches(
        list(read_range(config, KafkaRange(settings.topic_pos_sales, 0, 38, 40)))
    )
    assert again.column("offset").to_pylist() == [38, 39]
    close_readers()
