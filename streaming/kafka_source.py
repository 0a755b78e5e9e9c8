"""A Spark Python streaming data source over confluent-kafka: ``format("shelfcast_kafka")``.

Offsets per partition live in Spark's checkpoint (``assign()``, no consumer group), so a
restarted query resumes exactly where its last committed batch ended. With one topic they are
``{"<partition>": offset}``; with several, ``{"<topic>": {"<partition>": offset}}`` (a flat
checkpoint then holds the first topic's, and a topic new to it starts at its earliest
offset). The output schema and the options it shares (``subscribe``, ``maxOffsetsPerTrigger``,
``startingOffsets``, ``failOnDataLoss``) are Spark's ``kafka`` format's.

Kafka clients are never pickled with the reader: the driver side creates its own lazily, and
each Python worker keeps one consumer in a module-level cache.
"""

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows
from pyspark.sql.types import StructType

from streaming.errors import KafkaSourceError
from streaming.offsets import (
    TopicOffsets,
    advance,
    as_offsets,
    data_loss,
    limit_topics,
    nested,
    resume_after_loss,
    shaped,
)

__all__ = ["RAW_SCHEMA", "KafkaDataSource", "KafkaRange", "close_readers", "read_range"]

RAW_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
)
_ARROW_SCHEMA = pa.schema(
    [
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
log = logging.getLogger("shelfcast.ingest")
_CHUNK = 10_000
# An Arrow batch goes to Spark once it holds this many bytes of keys and values, whichever
# comes first: a burst of ~1 MB records made batches of 10 GB.
_CHUNK_BYTES = 16 * 1024 * 1024
_EOF = KafkaError._PARTITION_EOF  # noqa: SLF001 - librdkafka's public code, private name
_STALL_SECONDS = 30.0
_READER_CONSUMERS: dict[tuple[tuple[str, str], ...], Consumer] = {}


class KafkaRange(InputPartition):
    """Records ``[start, end)`` of one Kafka partition."""

    def __init__(self, topic: str, partition: int, start: int, end: int) -> None:
        super().__init__((topic, partition, start, end))
        self.topic, self.partition, self.start, self.end = topic, partition, start, end


class KafkaDataSource(DataSource):
    """Options: ``subscribe`` (topics, comma-separated), ``kafka.*`` (librdkafka settings),
    ``maxOffsetsPerTrigger``, ``startingOffsets`` (``earliest`` or ``latest``),
    ``failOnDataLoss`` (``true``: stop when offsets go backwards or below the log start;
    ``false``: go on from the earliest offset still there)."""

    @classmethod
    def name(cls) -> str:
        return "shelfcast_kafka"

    def schema(self) -> str:
        return RAW_SCHEMA

    def streamReader(self, schema: StructType) -> "KafkaStreamReader":
        return KafkaStreamReader(dict(self.options))


def _client_config(options: dict[str, str], fail_on_loss: bool) -> dict[str, str]:
    config = {
        key[len("kafka.") :]: value for key, value in options.items() if key.startswith("kafka.")
    }
    config.setdefault("group.id", "shelfcast-ingest")  # required by librdkafka; never joined
    config.update(
        {
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "fetch.wait.max.ms": "50",
            # "error": an offset below the log start is reported, never skipped silently.
            "auto.offset.reset": "error" if fail_on_loss else "earliest",
        }
    )
    return config


class KafkaStreamReader(DataSourceStreamReader):
    """Plans micro-batches from true end offsets and reads each partition range."""

    def __init__(self, options: dict[str, str]) -> None:
        lowered = {key.lower(): value for key, value in options.items()}
        topics = [t.strip() for t in lowered.get("subscribe", "").split(",") if t.strip()]
        if not topics:
            raise KafkaSourceError("Set the option 'subscribe' to the topics to read.")
        self.topics = list(dict.fromkeys(topics))
        self.fail_on_loss = lowered.get("failondataloss", "true").lower() != "false"
        self.config = _client_config(lowered, self.fail_on_loss)
        limit = int(lowered.get("maxoffsetspertrigger", "0"))
        self.max_rows = limit if limit > 0 else None
        self.starting = lowered.get("startingoffsets", "earliest").lower()
        self._consumer: Consumer | None = None
        self._last_ends: dict[str, dict[int, int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_consumer"] = None
        return state

    def _driver_consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self.config)
        return self._consumer

    def _watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        consumer = self._driver_consumer()
        try:
            meta = consumer.list_topics(topic, timeout=10)
            found = meta.topics[topic]
            if found.error is not None:
                raise KafkaSourceError(
                    f"Topic {topic!r} is not readable: {found.error}. Create it ('shelfcast up' "
                    "does) or fix SHELFCAST_TOPIC_POS_SALES, _POS_PLANS or _POS_STORES."
                ) from KafkaException(found.error)
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in sorted(found.partitions)
            }
        except KafkaException as exc:
            raise KafkaSourceError(
                f"Cannot read offsets of {topic!r}: {exc.args[0]}. Is the broker up?"
            ) from exc

    def _ends(self) -> tuple[dict[str, dict[int, int]], dict[str, dict[int, int]]]:
        """Each topic's end offsets and log start offsets, by partition."""
        marks = {topic: self._watermarks(topic) for topic in self.topics}
        self._last_ends = {t: {p: high for p, (_, high) in m.items()} for t, m in marks.items()}
        floors = {t: {p: low for p, (low, _) in m.items()} for t, m in marks.items()}
        return self._last_ends, floors

    def initialOffset(self) -> dict[str, Any]:
        ends, floors = self._ends()
        first = ends if self.starting == "latest" else floors
        return shaped({t: as_offsets(first[t]) for t in self.topics}, self.topics)

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_rows) if self.max_rows else ReadAllAvailable()

    def latestOffset(self, start: dict[str, Any], limit: ReadLimit) -> dict[str, Any]:
        begin = nested(start, self.topics)
        try:
            ends, floors = self._ends()
        except KafkaSourceError as exc:
            if not start or not isinstance(exc.__cause__, KafkaException):
                raise
            # A broker restart or a topic being recreated: nothing new this trigger, and the
            # next one asks again (Spark's own source retries such errors the same way).
            log.warning("no offsets this trigger: %s", exc)
            return dict(start)
        end: TopicOffsets = {}
        for topic in self.topics:
            here = begin.get(topic, {})
            lost = data_loss(here, ends[topic], floors[topic])
            if lost:
                if self.fail_on_loss:
                    raise KafkaSourceError(
                        f"Offsets of {topic!r} no longer match the checkpoint: "
                        f"{'; '.join(lost)}. Events may have been lost. To go on from the "
                        "earliest offset the broker has, set SHELFCAST_INGEST_ON_DATA_LOSS="
                        "earliest and restart; to start over, delete the ingest checkpoint."
                    )
                here = resume_after_loss(here, ends[topic], floors[topic])
                begin[topic] = here
            end[topic] = advance(here, ends[topic], floors[topic])
        if isinstance(limit, ReadMaxRows):
            end = limit_topics(begin, end, limit.max_rows)
        return shaped(end, self.topics)

    def reportLatestOffset(self) -> dict[str, Any] | None:
        # Only for progress metrics, asked right after latestOffset: no second broker round.
        if not self._last_ends:
            return None
        return shaped({t: as_offsets(e) for t, e in self._last_ends.items()}, self.topics)

    def partitions(self, start: dict[str, Any], end: dict[str, Any]) -> Sequence[KafkaRange]:
        # After a loss (failOnDataLoss=false) an end may lie below its start: the batch then
        # reads that partition from its earliest offset, as Spark's own source does.
        begin, stop_at = nested(start, self.topics), nested(end, self.topics)
        ranges = []
        for topic in self.topics:
            here = begin.get(topic, {})
            for key, stop in sorted(stop_at.get(topic, {}).items(), key=lambda kv: int(kv[0])):
                first = here.get(key, 0)
                if stop < first:
                    first = 0
                if stop > first:
                    ranges.append(KafkaRange(topic, int(key), first, stop))
        return ranges

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, KafkaRange)
        return read_range(self.config, partition)

    def commit(self, end: dict[str, Any]) -> None:
        """Offsets live in Spark's checkpoint; nothing to commit to Kafka."""

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _reader_consumer(config: dict[str, str]) -> Consumer:
    key = tuple(sorted(config.items()))
    consumer = _READER_CONSUMERS.get(key)
    if consumer is None:
        consumer = _READER_CONSUMERS[key] = Consumer(config)
    return consumer


def close_readers() -> None:
    """Close the consumers :func:`read_range` keeps in this process (one per configuration,
    for the process's life otherwise: a Python worker of Spark reads many ranges)."""
    while _READER_CONSUMERS:
        _READER_CONSUMERS.popitem()[1].close()


def read_range(config: dict[str, str], part: KafkaRange) -> Iterator[pa.RecordBatch]:
    """Yield the records of ``part`` as Arrow batches of the raw schema."""
    consumer = _reader_consumer(config)
    consumer.assign([TopicPartition(part.topic, part.partition, part.start)])
    next_offset = part.start
    last_progress = time.monotonic()
    columns: list[list[Any]] = [[], [], [], [], []]
    size = read_bytes = 0
    try:
        while next_offset < part.end:
            # consume() waits its whole timeout unless n arrive: ask only for what is left,
            # and for about _CHUNK_BYTES of records of the size seen so far (at first few).
            seen = next_offset - part.start
            many = _CHUNK_BYTES * seen // read_bytes if read_bytes else 100
            msgs = consumer.consume(max(1, min(part.end - next_offset, _CHUNK, many)), 1.0)
            if not msgs and time.monotonic() - last_progress > _STALL_SECONDS:
                raise KafkaSourceError(
                    f"No records from {part.topic}[{part.partition}] at offset {next_offset} "
                    f"for {_STALL_SECONDS:.0f} s although the batch ends at {part.end}. "
                    "Is the broker up? Spark will retry the batch."
                )
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == _EOF:
                        # At the end with offsets below it never delivered (control records,
                        # compaction): the range is complete. Below the end: keep waiting.
                        if (msg.offset() or 0) >= part.end:
                            next_offset = part.end
                        continue
                    raise KafkaSourceError(f"Reading {part.topic}[{part.partition}]: {err}")
                offset = msg.offset()
                if offset is None:
                    continue
                if offset >= part.end:
                    next_offset = part.end
                    break
                next_offset = offset + 1
                key, value = msg.key(), msg.value()
                length = len(key or b"") + len(value or b"")
                size += length
                read_bytes += length
                columns[0].append(key)
                columns[1].append(value)
                columns[2].append(offset)
                columns[3].append(msg.timestamp()[1] * 1000)
            if msgs:
                last_progress = time.monotonic()
            if len(columns[0]) >= _CHUNK or size >= _CHUNK_BYTES:
                yield _batch(part, columns)
                columns, size = [[], [], [], [], []], 0
        if columns[0]:
            yield _batch(part, columns)
    finally:
        consumer.unassign()


def _batch(part: KafkaRange, columns: list[list[Any]]) -> pa.RecordBatch:
    n = len(columns[0])
    return pa.RecordBatch.from_arrays(
        [
            pa.array(columns[0], pa.binary()),
            pa.array(columns[1], pa.binary()),
            pa.array([part.topic] * n, pa.string()),
            pa.array([part.partition] * n, pa.int32()),
            pa.array(columns[2], pa.int64()),
            pa.array(columns[3], pa.timestamp("us", tz="UTC")),
        ],
        schema=_ARROW_SCHEMA,
    )
