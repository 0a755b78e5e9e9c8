"""Split a micro-batch of raw Kafka records into valid events and rejects (pure)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from contracts import PosSale, validate_pos_sale
from streaming.schemas import POS_SALES, QUARANTINE

__all__ = ["Limits", "Split", "split_batch"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS = pa.timestamp("us", tz="UTC")


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
    # tz-aware to_pylist() is slow; integers and one addition each are ~15x faster.
    micros = raw.column("timestamp").cast(pa.int64()).to_pylist()
    good: list[PosSale] = []
    good_rows: list[int] = []
    bad_rows: list[int] = []
    reasons: list[str] = []
    for row, (key, value, stamp) in enumerate(zip(keys, values, micros, strict=True)):
        reference = now if stamp is None else _EPOCH + timedelta(microseconds=stamp)
        verdict = validate_pos_sale(
            key,
            value,
            reference_time=reference,
            max_bytes=limits.max_bytes,
            max_future=limits.max_future,
        )
        if isinstance(verdict, PosSale):
            good.append(verdict)
            good_rows.append(row)
        else:
            bad_rows.append(row)
            reasons.append(verdict.reason)
    kept = raw.take(pa.array(good_rows, pa.int64()))
    dropped = raw.take(pa.array(bad_rows, pa.int64()))
    events = pa.table(
        {
            "event_id": pa.array([s.event_id for s in good], pa.string()),
            "store_id": pa.array([s.store_id for s in good], pa.string()),
            "item_id": pa.array([s.item_id for s in good], pa.string()),
            "sold_at": pa.array([s.sold_at for s in good], _TS),
            # The store's own calendar day: the offset the POS sent says where it is.
            "sale_date": pa.array([s.sold_at.date() for s in good], pa.date32()),
            "quantity": pa.array([s.quantity for s in good], pa.float64()),
            "unit_price": pa.array([s.unit_price for s in good], pa.float64()),
            "kafka_topic": kept.column("topic"),
            "kafka_partition": kept.column("partition"),
            "kafka_offset": kept.column("offset"),
            "kafka_timestamp": kept.column("timestamp"),
            "batch_id": pa.repeat(pa.scalar(batch_id, pa.int64()), len(good)),
            "ingested_at": pa.repeat(pa.scalar(now, _TS), len(good)),
        },
        schema=POS_SALES,
    )
    rejects = pa.table(
        {
            "source_topic": dropped.column("topic"),
            "source_partition": dropped.column("partition"),
            "source_offset": dropped.column("offset"),
            "source_timestamp": dropped.column("timestamp"),
            "raw_key": dropped.column("key"),
            "raw_value": dropped.column("value"),
            "reason": pa.array(reasons, pa.string()),
            "quarantined_at": pa.repeat(pa.scalar(now, _TS), len(bad_rows)),
            "batch_id": pa.repeat(pa.scalar(batch_id, pa.int64()), len(bad_rows)),
        },
        schema=QUARANTINE,
    )
    return Split(events, rejects)
