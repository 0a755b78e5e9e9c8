"""The Kafka edge of retraining: forecasts out, counted as sent only once delivery is confirmed."""

from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

from contracts.forecast import Forecast
from retrain.errors import RetrainError

__all__ = ["Delivery", "ForecastPublisher"]


class Delivery:
    """One forecast handed to the producer: pending until Kafka confirms or refuses it.

    librdkafka keeps retrying a message until its ``message.timeout.ms``, so a message still
    pending after a Kafka outage is waited for, never sent again (that would duplicate it).
    """

    def __init__(self, producer: Producer, key: str) -> None:
        self._producer = producer  # kept: polling it is what serves this message's report
        self.key = key
        self.done = False
        self.error: str | None = None

    def report(self, err: RdKafkaError | None, _msg: Message) -> None:
        self.done = True
        self.error = None if err is None else str(err)

    def wait(self, timeout: float) -> bool:
        """Serve delivery reports for up to ``timeout`` s; whether this one is settled."""
        if not self.done:
            self._producer.flush(timeout)
        return self.done


class ForecastPublisher:
    """An idempotent producer on the forecasts topic."""

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        self.topic = topic
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise RetrainError(f"Cannot create the forecast producer: {exc}") from exc

    def send(self, forecast: Forecast) -> Delivery:
        """Hand one forecast to the producer; follow it with :meth:`Delivery.wait`."""
        delivery = Delivery(self._producer, forecast.key)
        try:
            self._producer.produce(
                self.topic,
                key=forecast.key.encode(),
                value=forecast.model_dump_json().encode(),
                on_delivery=delivery.report,
            )
        except (KafkaException, BufferError) as exc:
            delivery.done, delivery.error = True, str(exc)
        self._producer.poll(0)
        return delivery

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
