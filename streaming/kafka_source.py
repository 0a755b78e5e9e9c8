"""A Spark Python streaming data source over confluent-kafka: ``format("shelfcast_kafka")``.

Offsets per partition live in Spark's checkpoint (``assign()``, no consumer group), so a
restarted query resumes exactly where its last committed batch ended. Used when Spark's own
``kafka`` connector is not on the classpath; the output schema is the same as Spark's.

Kafka clients are never pickled with the reader: the driver side creates its own lazily, and
each Python worker keeps one consumer in a module-level cache.
"""

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows
from pyspark.sql.types import StructType

from streaming.errors import KafkaSourceError
from streaming.offsets import Offsets, advance, as_offsets, limit_range

__all__ = ["RAW_SCHEMA", "KafkaDataSource", "KafkaRange", "probe_true_ends"]

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
_CHUNK = 10_000
_EOF = KafkaError._PARTITION_EOF  # noqa: SLF001 - librdkafka's public code, private name
_STALL_SECONDS = 30.0
_READER_CONSUMERS: dict[tuple[tuple[str, str], ...], Consumer] = {}


class KafkaRange(InputPartition):
    """Records ``[start, end)`` of one Kafka partition."""

    def __init__(self, topic: str, partition: int, start: int, end: int) -> None:
        super().__init__((topic, partition, start, end))
        self.topic, self.partition, self.start, self.end = topic, partition, start, end


class KafkaDataSource(DataSource):
    """Options: ``subscribe`` (one topic), ``kafka.*`` (librdkafka settings),
    ``maxOffsetsPerTrigger``, ``trustWatermarks`` (true on Apache Kafka), ``startingOffsets``
    (``earliest`` or ``latest``)."""

    @classmethod
    def name(cls) -> str:
        return "shelfcast_kafka"

    def schema(self) -> str:
        return RAW_SCHEMA

    def streamReader(self, schema: StructType) -> "KafkaStreamReader":
        return KafkaStreamReader(dict(self.options))


def _client_config(options: dict[str, str]) -> dict[str, str]:
    config = {
        key[len("kafka.") :]: value for key, value in options.items() if key.startswith("kafka.")
    }
    config.setdefault("group.id", "shelfcast-ingest")  # required by librdkafka; never joined
    config.update(
        {
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "fetch.wait.max.ms": "50",
            "auto.offset.reset": "earliest",
        }
    )
    return config


class KafkaStreamReader(DataSourceStreamReader):
    """Plans micro-batches from true end offsets and reads each partition range."""

    def __init__(self, options: dict[str, str]) -> None:
        lowered = {key.lower(): value for key, value in options.items()}
        if "subscribe" not in lowered:
            raise KafkaSourceError("Set the option 'subscribe' to the topic to read.")
        self.topic = lowered["subscribe"]
        self.config = _client_config(lowered)
        limit = int(lowered.get("maxoffsetspertrigger", "0"))
        self.max_rows = limit if limit > 0 else None
        self.trust_watermarks = lowered.get("trustwatermarks", "false").lower() == "true"
        self.starting = lowered.get("startingoffsets", "earliest").lower()
        self._consumer: Consumer | None = None
        self._known_ends: dict[int, int] = {}
        self._probed_at: dict[int, int] = {}
        self._last_ends: dict[int, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_consumer"] = None
        return state

    def _driver_consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self.config)
        return self._consumer

    def _watermarks(self) -> dict[int, tuple[int, int]]:
        consumer = self._driver_consumer()
        try:
            meta = consumer.list_topics(self.topic, timeout=10)
            topic = meta.topics[self.topic]
            if topic.error is not None:
                raise KafkaSourceError(
                    f"Topic {self.topic!r} is not readable: {topic.error}. "
                    "Create it ('shelfcast up' does) or fix SHELFCAST_TOPIC_POS_SALES."
                )
            return {
                p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                for p in sorted(topic.partitions)
            }
        except KafkaException as exc:
            raise KafkaSourceError(
                f"Cannot read offsets of {self.topic!r}: {exc.args[0]}. Is the broker up?"
            ) from exc

    def _ends(self) -> tuple[dict[int, int], dict[int, int]]:
        marks = self._watermarks()
        floors = {p: low for p, (low, _) in marks.items()}
        highs = {p: high for p, (_, high) in marks.items()}
        if self.trust_watermarks:
            return highs, floors
        # tansu reports the base offset of the last record batch + 1: read that batch to
        # find its end, for partitions with a batch we have not probed yet.
        stale = {p: h for p, h in highs.items() if self._probed_at.get(p) != h}
        if stale:
            found = probe_true_ends(self._driver_consumer(), self.topic, stale)
            self._known_ends.update(found)
            # A partition the probe did not finish is probed again next time.
            self._probed_at.update({p: stale[p] for p in found})
        ends = {p: max(highs[p], self._known_ends.get(p, 0)) for p in highs}
        self._last_ends = ends
        return ends, floors

    def initialOffset(self) -> Offsets:
        ends, floors = self._ends()
        return as_offsets(ends if self.starting == "latest" else floors)

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_rows) if self.max_rows else ReadAllAvailable()

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        ends, floors = self._ends()
        end = advance(start, ends, floors)
        if isinstance(limit, ReadMaxRows):
            end = limit_range(start, end, limit.max_rows)
        return end

    def reportLatestOffset(self) -> Offsets | None:
        # Only for progress metrics, asked right after latestOffset: no second broker round.
        return as_offsets(self._last_ends) if self._last_ends else None

    def partitions(self, start: Offsets, end: Offsets) -> Sequence[KafkaRange]:
        return [
            KafkaRange(self.topic, int(key), start.get(key, 0), stop)
            for key, stop in sorted(end.items(), key=lambda kv: int(kv[0]))
            if stop > start.get(key, 0)
        ]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, KafkaRange)
        return read_range(self.config, partition)

    def commit(self, end: Offsets) -> None:
        """Offsets live in Spark's checkpoint; nothing to commit to Kafka."""

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def probe_true_ends(
    consumer: Consumer, topic: str, highs: dict[int, int], budget: float = 1.0
) -> dict[int, int]:
    """Read each partition's last record batch (the one holding ``high - 1``); its end is
    an end offset that covers every record written before ``highs`` were read.

    A fetch returns whole record batches and librdkafka queues a partition's fetched records
    at once, so the first non-empty ``consume`` that does not fill its limit holds the whole
    batch: no need to chase a producer that keeps writing (on tansu EOF may then never
    come). EOF ends a partition too. Correct on Apache Kafka (the probe reads one record).
    Partitions not finished within ``budget`` seconds are left out of the result; an empty
    partition (mark 0) needs no read.
    """
    ends = dict(highs)
    waiting = {p for p, h in highs.items() if h > 0}
    if not waiting:
        return ends
    consumer.assign([TopicPartition(topic, p, highs[p] - 1) for p in waiting])
    deadline = time.monotonic() + budget
    try:
        while waiting and time.monotonic() < deadline:
            # consume() waits its whole timeout unless n arrive, and n is unknown here.
            msgs = consumer.consume(_CHUNK, 0.02)
            got: set[int] = set()
            for msg in msgs:
                err = msg.error()
                if err is not None and err.code() == _EOF:
                    waiting.discard(msg.partition())
                elif err is not None:
                    raise KafkaSourceError(f"Probing the end of {topic!r} failed: {err}")
                else:
                    part, offset = msg.partition(), msg.offset()
                    if part is not None and offset is not None:
                        ends[part] = max(ends[part], offset + 1)
                        got.add(part)
            if len(msgs) < _CHUNK:
                waiting -= got
    finally:
        consumer.unassign()
    return {p: end for p, end in ends.items() if p not in waiting}


def _reader_consumer(config: dict[str, str]) -> Consumer:
    key = tuple(sorted(config.items()))
    consumer = _READER_CONSUMERS.get(key)
    if consumer is None:
        consumer = _READER_CONSUMERS[key] = Consumer(config)
    return consumer


def read_range(config: dict[str, str], part: KafkaRange) -> Iterator[pa.RecordBatch]:
    """Yield the records of ``part`` as Arrow batches of the raw schema."""
    consumer = _reader_consumer(config)
    consumer.assign([TopicPartition(part.topic, part.partition, part.start)])
    next_offset = part.start
    last_progress = time.monotonic()
    columns: list[list[Any]] = [[], [], [], [], []]
    try:
        while next_offset < part.end:
            # consume() waits its whole timeout unless n arrive: ask only for what is left.
            msgs = consumer.consume(min(part.end - next_offset, _CHUNK), 1.0)
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
                columns[0].append(msg.key())
                columns[1].append(msg.value())
                columns[2].append(offset)
                columns[3].append(msg.timestamp()[1] * 1000)
            if msgs:
                last_progress = time.monotonic()
            if len(columns[0]) >= _CHUNK:
                yield _batch(part, columns)
                columns = [[], [], [], [], []]
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
