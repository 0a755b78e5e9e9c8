"""Split a micro-batch of raw Kafka records into valid events and rejects (pure)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from contracts import PosSale, validate_pos_sale
from streaming.schemas import POS_SALES, QUARANTINE

__all__ = ["Limits", "Split", "split_batch"]


@dataclass(frozen=True)
class Limits:
    """What makes a record bad besides the contract's types."""

    max_bytes: int
    max_future: timedelta


@dataclass(frozen=True)
class Split:
    """Valid events (``pos_sales`` schema, in Kafka order) and rejects (``quarantine`` schema)."""

    events: pa.Table
    rejects: pa.Table


def split_batch(raw: pa.Table, batch_id: int, now: datetime, limits: Limits) -> Split:
    """Validate every record of ``raw`` (the Kafka source's schema)."""
    keys = raw.column("key").to_pylist()
    values = raw.column("value").to_pylist()
    topics = raw.column("topic").to_pylist()
    partitions = raw.column("partition").to_pylist()
    offsets = raw.column("offset").to_pylist()
    stamps = raw.column("timestamp").to_pylist()
    good: list[tuple[int, PosSale]] = []
    bad: list[tuple[int, str]] = []
    for row, (key, value, stamp) in enumerate(zip(keys, values, stamps, strict=True)):
        verdict = validate_pos_sale(
            key,
            value,
            reference_time=stamp or now,
            max_bytes=limits.max_bytes,
            max_future=limits.max_future,
        )
        if isinstance(verdict, PosSale):
            good.append((row, verdict))
        else:
            bad.append((row, verdict.reason))
    events = pa.Table.from_pydict(
        {
            "event_id": [s.event_id for _, s in good],
            "store_id": [s.store_id for _, s in good],
            "item_id": [s.item_id for _, s in good],
            "sold_at": [s.sold_at for _, s in good],
            # The store's own calendar day: the offset the POS sent says where it is.
            "sale_date": [s.sold_at.date() for _, s in good],
            "quantity": [s.quantity for _, s in good],
            "unit_price": [s.unit_price for _, s in good],
            "kafka_topic": [topics[r] for r, _ in good],
            "kafka_partition": [partitions[r] for r, _ in good],
            "kafka_offset": [offsets[r] for r, _ in good],
            "kafka_timestamp": [stamps[r] for r, _ in good],
            "batch_id": [batch_id] * len(good),
            "ingested_at": [now] * len(good),
        },
        schema=POS_SALES,
    )
    rejects = pa.Table.from_pydict(
        {
            "source_topic": [topics[r] for r, _ in bad],
            "source_partition": [partitions[r] for r, _ in bad],
            "source_offset": [offsets[r] for r, _ in bad],
            "source_timestamp": [stamps[r] for r, _ in bad],
            "raw_key": [keys[r] for r, _ in bad],
            "raw_value": [values[r] for r, _ in bad],
            "reason": [reason for _, reason in bad],
            "quarantined_at": [now] * len(bad),
            "batch_id": [batch_id] * len(bad),
        },
        schema=QUARANTINE,
    )
    return Split(events, rejects)
