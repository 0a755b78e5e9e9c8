"""The dead-letter sink: each rejected record, with its reason, to the ``pos.sales.dlq`` topic.

No bad record may stop the stream. A letter carries a bounded copy of the record
(``contracts.dead_letter.MAX_RAW_BYTES`` of key and of value, with the original size and hash
when cut): a record of ~750 KB once became a letter over Kafka's message limit, the batch
raised, and every restart replayed it. A letter the broker still refuses as too large (a
topic with a smaller limit) goes again without the raw copy, and if even that is refused it
is logged and skipped: the whole record is in the Delta table ``quarantine`` either way. Only
a broker that is away fails the batch (Spark retries it; the topic is at least once).
"""

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
from confluent_kafka import KafkaError, KafkaException, Producer
from pydantic import ValidationError

from contracts import DeadLetter
from contracts.dead_letter import MAX_RAW_BYTES, RawCopy, b64, raw_copy
from streaming.config import KafkaClient
from streaming.errors import StreamingError

__all__ = ["DeadLetterTopic", "letter"]

log = logging.getLogger("shelfcast.ingest")

# The producer's own limit raises MSG_SIZE_TOO_LARGE at produce(); the broker's comes back
# as a delivery error.
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
_REASON_CHARS = 2_000  # the whole reason is in the quarantine table


def letter(
    row: dict[str, Any], max_raw_bytes: int = MAX_RAW_BYTES, contract: str = "pos_sale/v1"
) -> DeadLetter:
    """The letter of one quarantine row, with at most ``max_raw_bytes`` of key and value;
    ``contract``: the one the record failed."""
    key = _copy(row, "raw_key", max_raw_bytes)
    value = _copy(row, "raw_value", max_raw_bytes)
    reason = row["reason"]
    return DeadLetter(
        source_topic=row["source_topic"],
        source_partition=row["source_partition"],
        source_offset=row["source_offset"],
        source_timestamp=row["source_timestamp"],
        raw_key_b64=key.b64,
        raw_value_b64=value.b64,
        reason=reason if len(reason) <= _REASON_CHARS else reason[:_REASON_CHARS] + "...",
        quarantined_at=row["quarantined_at"],
        raw_key_size=key.size,
        raw_key_sha256=key.sha256,
        raw_value_size=value.size,
        raw_value_sha256=value.sha256,
        contract=contract,
    )


def _copy(row: dict[str, Any], field: str, max_raw_bytes: int) -> RawCopy:
    """A letter's copy of ``field``; of a field the driver got cut (its size and SHA-256 in
    the row), the first bytes it got with the whole field's size and hash."""
    size = row.get(f"{field}_size")
    if size is None:
        return raw_copy(row[field], max_raw_bytes)
    first: bytes = row[field][:max_raw_bytes]
    return RawCopy(b64(first) if max_raw_bytes else None, size, row[f"{field}_sha256"])


def _where(row: dict[str, Any]) -> str:
    return f"{row['source_topic']}/{row['source_partition']}/{row['source_offset']}"


def _too_large(err: Any) -> bool:
    return isinstance(err, KafkaError) and err.code() in _TOO_LARGE


class DeadLetterTopic:
    """Publishes rejects as ``dead_letter`` v1 JSON, keyed by their source coordinates."""

    def __init__(
        self,
        kafka: KafkaClient | Mapping[str, Any],
        topic: str,
        max_raw_bytes: int = MAX_RAW_BYTES,
        contracts: Mapping[str, str] | None = None,
    ) -> None:
        """``kafka``: the client, or a producer's whole librdkafka config; ``contracts``: the
        contract of each source topic but the sales topic's (``pos_sale/v1``)."""
        self._kafka = kafka
        self._topic = topic
        self._contracts = dict(contracts or {})
        self._max_raw_bytes = max_raw_bytes
        self._producer: Producer | None = None

    def publish(self, rejects: pa.Table, timeout: float = 30.0) -> None:
        """Send every reject and wait until the broker confirmed them all (or refused one as
        too large even without its raw copy)."""
        if rejects.num_rows == 0:
            return
        if self._producer is None:
            kafka = self._kafka
            config = kafka.producer() if isinstance(kafka, KafkaClient) else dict(kafka)
            self._producer = Producer(config)
        producer = self._producer
        failures: list[str] = []
        refused: list[dict[str, Any]] = []
        try:
            for row in rejects.to_pylist():
                try:
                    message = letter(row, self._max_raw_bytes, self._contract(row))
                except ValidationError as exc:  # never seen; must not stop the stream either
                    log.error("no dead letter for %s: %s (it is in quarantine)", _where(row), exc)
                    continue
                self._send(producer, row, message, refused, failures)
            left = producer.flush(timeout)
            if not left:  # every first letter answered: send the refused ones again, smaller
                again, refused = refused, []
                for row in again:
                    smaller = letter(row, 0, self._contract(row))
                    self._send(producer, row, smaller, refused, failures)
                left = producer.flush(timeout)
        except KafkaException as exc:
            raise StreamingError(f"Publishing to {self._topic!r} failed: {exc.args[0]}") from exc
        if left or failures:
            raise StreamingError(
                f"{left} dead letters unconfirmed and {len(failures)} failed on {self._topic!r} "
                f"({failures[:1]}); the batch will be retried. Is the broker up?"
            )
        for row in refused:
            log.error(
                "dead letter of %s refused by %r as too large even without its raw copy; "
                "skipped (the record is in the quarantine table). Raise the topic's "
                "max.message.bytes.",
                _where(row),
                self._topic,
            )

    def _contract(self, row: dict[str, Any]) -> str:
        return self._contracts.get(row["source_topic"], "pos_sale/v1")

    def _send(
        self,
        producer: Producer,
        row: dict[str, Any],
        message: DeadLetter,
        refused: list[dict[str, Any]],
        failures: list[str],
    ) -> None:
        """Produce one letter; a refusal as too large goes to ``refused``, others to
        ``failures``."""

        def on_delivery(err: Any, _msg: Any) -> None:
            if _too_large(err):
                refused.append(row)
            elif err is not None:
                failures.append(str(err))

        key = f"{message.source_topic}/{message.source_partition}/{message.source_offset}"
        _retry_while_full(
            producer,
            lambda: producer.produce(
                self._topic, key=key, value=message.to_json(), on_delivery=on_delivery
            ),
            lambda _exc: refused.append(row),
        )

    def close(self, timeout: float = 10.0) -> None:
        """Let queued letters go (at most ``timeout`` s). ``publish`` waits for its own, so
        anything still queued belongs to a batch that did not commit and is sent again."""
        if self._producer is not None:
            self._producer.flush(timeout)
            self._producer = None


def _retry_while_full(
    producer: Producer, produce: Callable[[], None], refused: Callable[[KafkaException], None]
) -> None:
    """``produce``, waiting while the local queue is full; a message over the producer's own
    limit is refused at once (``refused``), any other error raised."""
    while True:
        try:
            produce()
        except BufferError:
            producer.poll(0.5)  # the local queue is full: let deliveries drain it
            continue
        except KafkaException as exc:
            if not _too_large(exc.args[0]):
                raise
            refused(exc)
        producer.poll(0)
        return
