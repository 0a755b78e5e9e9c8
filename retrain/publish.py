"""The Kafka edge of retraining: forecasts out, counted as sent only once delivery is confirmed."""

from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

from contracts.forecast import Forecast
from retrain.errors import RetrainError

__all__ = ["ForecastPublisher"]


class ForecastPublisher:
    """An idempotent producer on the forecasts topic."""

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        self.topic = topic
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise RetrainError(f"Cannot create the forecast producer: {exc}") from exc

    def publish(self, forecasts: Sequence[Forecast], timeout: float = 30.0) -> dict[str, str]:
        """Send and wait; return ``{key: error}`` for those not confirmed (empty: all were)."""
        failed: dict[str, str] = {}
        pending = {f.key for f in forecasts}

        def delivered(err: RdKafkaError | None, msg: Message) -> None:
            key = (msg.key() or b"").decode()
            if err is not None:
                failed[key] = str(err)
            else:
                pending.discard(key)

        for forecast in forecasts:
            try:
                self._producer.produce(
                    self.topic,
                    key=forecast.key.encode(),
                    value=forecast.model_dump_json().encode(),
                    on_delivery=delivered,
                )
            except (KafkaException, BufferError) as exc:
                failed[forecast.key] = str(exc)
            self._producer.poll(0)
        left = self._producer.flush(timeout)
        for key in pending - failed.keys():
            failed[key] = f"not confirmed within {timeout:.0f} s ({left} messages in flight)"
        return failed

    def close(self) -> None:
        self._producer.flush(10)
