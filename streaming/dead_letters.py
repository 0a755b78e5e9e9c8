"""The dead-letter sink: each rejected record, with its reason, to the ``pos.sales.dlq`` topic."""

from typing import Any

import pyarrow as pa
from confluent_kafka import KafkaException, Producer

from contracts import DeadLetter
from contracts.dead_letter import b64
from streaming.errors import StreamingError

__all__ = ["DeadLetterTopic"]


class DeadLetterTopic:
    """Publishes rejects as ``dead_letter`` v1 JSON, keyed by their source coordinates."""

    def __init__(self, producer_config: dict[str, Any], topic: str) -> None:
        self._config = producer_config
        self._topic = topic
        self._producer: Producer | None = None

    def publish(self, rejects: pa.Table, timeout: float = 30.0) -> None:
        """Send every reject and wait until the broker confirmed them all."""
        if rejects.num_rows == 0:
            return
        if self._producer is None:
            self._producer = Producer(self._config)
        failures: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        try:
            for row in rejects.to_pylist():
                letter = DeadLetter(
                    source_topic=row["source_topic"],
                    source_partition=row["source_partition"],
                    source_offset=row["source_offset"],
                    source_timestamp=row["source_timestamp"],
                    raw_key_b64=b64(row["raw_key"]),
                    raw_value_b64=b64(row["raw_value"]),
                    reason=row["reason"],
                    quarantined_at=row["quarantined_at"],
                )
                key = f"{letter.source_topic}/{letter.source_partition}/{letter.source_offset}"
                self._producer.produce(
                    self._topic, key=key, value=letter.model_dump_json(), on_delivery=on_delivery
                )
                self._producer.poll(0)
            left = self._producer.flush(timeout)
        except KafkaException as exc:
            raise StreamingError(f"Publishing to {self._topic!r} failed: {exc.args[0]}") from exc
        if left or failures:
            raise StreamingError(
                f"{left} dead letters unconfirmed and {len(failures)} failed on {self._topic!r} "
                f"({failures[:1]}); the batch will be retried. Is the broker up?"
            )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
