"""The Kafka edge of retraining: forecasts out, counted as sent only once delivery is confirmed.

The producer is idempotent (the application's config enables it) and never gives up on a
message: ``message.timeout.ms`` is 0 here, so librdkafka retries each forecast, with the same
producer id and sequence number, until the broker acknowledges it, however long Kafka is
away. The broker keeps one copy of those retries, even when an acknowledgement was lost on the
way back. With a finite timeout (librdkafka's default is 5 min) a forecast the broker had
stored but not yet acknowledged came back as failed, and the coordinator produced it again:
two copies. A forecast is produced again only after a definite refusal (never stored), or
after this producer itself was replaced (a fatal idempotence error, new settings), when what
it had in flight may have been stored: consumers deduplicate on ``(key, model_version)``.
"""

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

from contracts.forecast import Forecast
from retrain.errors import RetrainError

__all__ = ["Delivery", "ForecastPublisher"]

# librdkafka: 0 = no local time limit on a message (it is retried until acknowledged).
NEVER_GIVE_UP = {"message.timeout.ms": 0}


class Delivery:
    """One forecast handed to the producer: pending until Kafka confirms or refuses it.

    ``then`` (if given) is called with the delivery once it is settled, on the thread that
    serves the producer's reports (:meth:`ForecastPublisher.poll`)."""

    def __init__(
        self,
        producer: Producer | None,
        key: str,
        then: Callable[["Delivery"], None] | None = None,
    ) -> None:
        self._producer = producer  # kept: polling it is what serves this message's report
        self.key = key
        self.then = then
        self.done = False
        self.error: str | None = None
        # The producer cannot go on (an idempotence error): replace it, then send again.
        self.fatal = False

    def report(self, err: RdKafkaError | None, _msg: Message | None) -> None:
        """The producer's delivery callback."""
        self.settle(None if err is None else str(err), err is not None and bool(err.fatal()))

    def settle(self, error: str | None, fatal: bool = False) -> None:
        self.done, self.error, self.fatal = True, error, fatal
        if self.then is not None:
            self.then(self)

    def wait(self, timeout: float) -> bool:
        """Serve delivery reports for up to ``timeout`` s; whether this one is settled."""
        if not self.done and self._producer is not None:
            self._producer.flush(timeout)
        return self.done


class ForecastPublisher:
    """An idempotent producer on the forecasts topic that retries each message until Kafka
    acknowledges it."""

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        self.topic = topic
        try:
            self._producer = Producer({**config, **NEVER_GIVE_UP})
        except KafkaException as exc:
            raise RetrainError(f"Cannot create the forecast producer: {exc}") from exc

    def send(self, forecast: Forecast, then: Callable[[Delivery], None] | None = None) -> Delivery:
        """Hand one forecast to the producer; follow it with :meth:`Delivery.wait`, or
        :meth:`poll` this publisher and hear of it through ``then``."""
        delivery = Delivery(self._producer, forecast.key, then)
        try:
            self._producer.produce(
                self.topic,
                key=forecast.key.encode(),
                value=forecast.model_dump_json().encode(),
                on_delivery=delivery.report,
            )
        except BufferError as exc:  # the local queue is full (Kafka away long): not queued
            delivery.settle(f"the producer's queue is full ({exc}); Kafka is away")
        except KafkaException as exc:
            error: RdKafkaError = exc.args[0]
            delivery.report(error, None)
        self._producer.poll(0)
        return delivery

    def poll(self, timeout: float) -> int:
        """Serve delivery reports for up to ``timeout`` s; how many were served."""
        served: int = self._producer.poll(timeout)
        return served

    @property
    def in_flight(self) -> int:
        """Messages not yet acknowledged or refused."""
        return len(self._producer)

    def purge(self) -> None:
        """Give up what is queued or in flight (its reports say so: send it again elsewhere;
        what was in flight may have been stored)."""
        self._producer.purge()
        self._producer.poll(0)

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

    def close(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` s for what is in flight, then give up the rest."""
        if self._producer.flush(timeout):
            self.purge()
