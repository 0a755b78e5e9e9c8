"""Send POS events to Kafka, keyed by series, at a rate or as fast as possible."""

import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer

from contracts import series_key
from shelfcast.errors import KafkaError

__all__ = ["send_events", "send_messages"]


def send_events(
    config: dict[str, Any],
    topic: str,
    events: Iterable[dict[str, Any]],
    rate: float | None = None,
    progress_every: float = 5.0,
    quiet: bool = False,
) -> int:
    """Produce every event, keyed by its series; return how many the broker confirmed.
    ``rate`` is events/s."""
    return send_messages(
        config,
        ((topic, series_key(e["store_id"], e["item_id"]), e) for e in events),
        rate,
        progress_every,
        quiet,
    )


def send_messages(
    config: dict[str, Any],
    messages: Iterable[tuple[str, str, dict[str, Any]]],
    rate: float | None = None,
    progress_every: float = 5.0,
    quiet: bool = False,
) -> int:
    """Produce every ``(topic, key, value)`` in order, the value as JSON; return how many
    the broker confirmed. ``rate`` is messages/s."""
    producer = Producer(config)
    failed: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    started = last = time.monotonic()
    sent = 0
    topics: set[str] = set()
    try:
        for topic, key, message in messages:
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            value = json.dumps(message, separators=(",", ":"))
            topics.add(topic)
            while True:
                try:
                    producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)  # local queue full: let deliveries drain
            producer.poll(0)
            sent += 1
            now = time.monotonic()
            if not quiet and now - last >= progress_every:
                print(f"sent {sent:,} events ({sent / (now - started):,.0f}/s)", file=sys.stderr)
                last = now
        left = producer.flush(60)
    except KafkaException as exc:
        raise KafkaError(
            f"Producing to {', '.join(sorted(topics))} failed: {exc.args[0]}. Is the broker up?"
        ) from exc
    if left or failed:
        raise KafkaError(
            f"{left} events unconfirmed and {len(failed)} failed on {', '.join(sorted(topics))} "
            f"(first: {failed[:1]}). Check the broker, then send again: event ids, plan ids "
            "and revisions make resends safe."
        )
    if not quiet:
        elapsed = time.monotonic() - started
        print(f"sent {sent:,} events in {elapsed:.1f} s", file=sys.stderr)
    return sent
