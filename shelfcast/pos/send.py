"""Send POS events to Kafka, keyed by series, at a rate or as fast as possible."""

import json
import sys
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer

from contracts import series_key
from shelfcast.errors import KafkaError

__all__ = ["send_events"]


def send_events(
    config: dict[str, Any],
    topic: str,
    events: Iterable[dict[str, Any]],
    rate: float | None = None,
    progress_every: float = 5.0,
    quiet: bool = False,
) -> int:
    """Produce every event; return how many the broker confirmed. ``rate`` is events/s."""
    producer = Producer(config)
    failed: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    started = last = time.monotonic()
    sent = 0
    try:
        for event in events:
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            value = json.dumps(event, separators=(",", ":"))
            key = series_key(event["store_id"], event["item_id"])
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
            f"Producing to {topic!r} failed: {exc.args[0]}. Is the broker up?"
        ) from exc
    if left or failed:
        raise KafkaError(
            f"{left} events unconfirmed and {len(failed)} failed on {topic!r} (first: "
            f"{failed[:1]}). Check the broker, then send again: event ids make resends safe."
        )
    if not quiet:
        elapsed = time.monotonic() - started
        print(f"sent {sent:,} events in {elapsed:.1f} s", file=sys.stderr)
    return sent
