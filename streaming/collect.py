"""Bring a micro-batch into the driver without holding more than ``max_batch_bytes`` of Kafka
keys and values at once.

``maxOffsetsPerTrigger`` caps the records of a batch, not its bytes, and neither Kafka source
has a byte cap (Spark 4.2's ``kafka`` format has none: its limits are ``maxOffsetsPerTrigger``,
``minOffsetsPerTrigger``, ``maxTriggerDelay`` and ``maxRecordsPerPartition``, all in records).
A batch's offsets are fixed in the checkpoint before it runs, so a burst of ~1 MB records that
overran the driver would be replayed, and overrun it again, at every restart. So:

1. One Spark job brings every record whose key and value together are *small* (at most
   ``max_batch_bytes / max records per batch``, and at least :data:`SMALL_FLOOR`) whole, and of
   the others only their coordinates and sizes. Live traffic and backlogs of POS events are
   small records: this is the only job, as before.
2. The large records come next, whole, when together they fit in ``max_batch_bytes`` (a
   second job, in Arrow batches of a few MB).
3. Otherwise in chunks of at most ``max_batch_bytes``, and a value over both the event limit
   and :data:`CUT_BYTES` (a key over :data:`CUT_BYTES`) arrives cut to its first
   :data:`CUT_BYTES`, with its whole size and SHA-256 computed by Spark (:data:`CUT_COLUMNS`):
   such a value is refused anyway, and its dead letter carries just that.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from contracts.dead_letter import MAX_RAW_BYTES

__all__ = [
    "CUT_BYTES",
    "CUT_COLUMNS",
    "SMALL_FLOOR",
    "Budget",
    "collect_bounded",
    "split_by_bytes",
]

log = logging.getLogger("shelfcast.ingest")

CUT_BYTES = MAX_RAW_BYTES
SMALL_FLOOR = 1024
# Added to a chunk of cut records: the whole field's size and SHA-256 where it arrived cut.
CUT_COLUMNS = ("raw_key_size", "raw_key_sha256", "raw_value_size", "raw_value_sha256")
# Large records go to Python in Arrow batches of about this many bytes (Spark's default of
# 10,000 records per batch made one batch of 10 GB of ~1 MB records, serialized in the heap).
_ARROW_BATCH_BYTES = 8 * 1024 * 1024
_RAW = ["key", "value", "topic", "partition", "offset", "timestamp"]
_AT = ["topic", "partition", "offset"]


@dataclass(frozen=True)
class Budget:
    """How much of a batch the driver may hold at once, the most records a batch has, and
    the largest valid event."""

    max_batch_bytes: int
    max_records: int
    max_event_bytes: int

    @property
    def small(self) -> int:
        """A record whose key and value together are at most this is small."""
        return max(SMALL_FLOOR, self.max_batch_bytes // max(1, self.max_records))


def split_by_bytes(sizes: pa.Table, max_bytes: int) -> list[pa.Table]:
    """``sizes`` in Kafka order, cut into consecutive parts whose ``size`` sums to at most
    ``max_bytes`` each (a record larger than that alone makes a part)."""
    ordered = sizes.sort_by([(c, "ascending") for c in _AT])
    parts: list[pa.Table] = []
    start, used = 0, 0
    for row, size in enumerate(ordered.column("size").to_pylist()):
        if row > start and used + size > max_bytes:
            parts.append(ordered.slice(start, row - start))
            start, used = row, 0
        used += size
    if start < ordered.num_rows:
        parts.append(ordered.slice(start))
    return parts


def collect_bounded(frame: Any, batch_id: int, budget: Budget) -> Iterator[pa.Table]:
    """The batch's records (the Kafka source's columns) in one table, or past the budget in
    several, the last ones with :data:`CUT_COLUMNS` (see the module's text)."""
    from pyspark.sql import functions as F

    key_len = F.coalesce(F.octet_length("key"), F.lit(0))
    value_len = F.coalesce(F.octet_length("value"), F.lit(0))
    small = key_len + value_len <= budget.small
    first = frame.select(
        F.when(small, F.col("key")).alias("key"),
        F.when(small, F.col("value")).alias("value"),
        "topic",
        "partition",
        "offset",
        "timestamp",
        key_len.alias("key_size"),
        value_len.alias("value_size"),
    ).toArrow()
    whole = pc.add(first.column("key_size"), first.column("value_size"))
    large = pc.greater(whole, budget.small)
    if not pc.any(large).as_py():
        yield first.select(_RAW)
        return
    sizes = first.filter(large).select([*_AT, "key_size", "value_size"])
    sizes = sizes.append_column("size", whole.filter(large))
    rest = first.filter(pc.invert(large)).select(_RAW)
    del first, whole
    if rest.num_rows:
        yield rest
    del rest  # each table yielded may take the whole budget
    total = pc.sum(sizes.column("size")).as_py()
    if total <= budget.max_batch_bytes:
        yield _fetch(frame, sizes, cut=None)
        return
    cut_key = pc.greater(sizes.column("key_size"), CUT_BYTES)
    cut_value = pc.greater(sizes.column("value_size"), max(budget.max_event_bytes, CUT_BYTES))
    kept = pc.add(
        pc.if_else(cut_key, CUT_BYTES, sizes.column("key_size")),
        pc.if_else(cut_value, CUT_BYTES, sizes.column("value_size")),
    )
    sizes = sizes.set_column(sizes.column_names.index("size"), "size", kept)
    parts = split_by_bytes(sizes, budget.max_batch_bytes)
    log.warning(
        "batch %d: %d records of %.0f MB, over the driver's %.0f MB "
        "(SHELFCAST_INGEST_MAX_BATCH_BYTES): read in %d parts, values over %d bytes cut",
        batch_id,
        sizes.num_rows,
        total / 1e6,
        budget.max_batch_bytes / 1e6,
        len(parts),
        max(budget.max_event_bytes, CUT_BYTES),
    )
    for part in parts:
        yield _fetch(frame, part, cut=max(budget.max_event_bytes, CUT_BYTES))


def _fetch(frame: Any, records: pa.Table, cut: int | None) -> pa.Table:
    """The records at ``records``' coordinates, whole, or (``cut``) with values over ``cut``
    bytes and keys over :data:`CUT_BYTES` cut, their sizes and hashes alongside."""
    from pyspark.sql import functions as F

    spark = frame.sparkSession
    wanted = spark.createDataFrame(records.select(_AT).to_pandas())
    chosen = frame.join(F.broadcast(wanted), on=_AT, how="left_semi")
    largest = pc.max(records.column("size")).as_py() or 1
    with _records_per_arrow_batch(spark, max(1, _ARROW_BATCH_BYTES // largest)):
        if cut is None:
            return chosen.select(_RAW).toArrow()
        key_len = F.octet_length("key")
        value_len = F.octet_length("value")
        too_long_key = F.coalesce(key_len > CUT_BYTES, F.lit(False))
        too_long_value = F.coalesce(value_len > cut, F.lit(False))
        return chosen.select(
            F.when(too_long_key, F.substring("key", 1, CUT_BYTES))
            .otherwise(F.col("key"))
            .alias("key"),
            F.when(too_long_value, F.substring("value", 1, CUT_BYTES))
            .otherwise(F.col("value"))
            .alias("value"),
            "topic",
            "partition",
            "offset",
            "timestamp",
            F.when(too_long_key, key_len.cast("long")).alias("raw_key_size"),
            F.when(too_long_key, F.sha2("key", 256)).alias("raw_key_sha256"),
            F.when(too_long_value, value_len.cast("long")).alias("raw_value_size"),
            F.when(too_long_value, F.sha2("value", 256)).alias("raw_value_sha256"),
        ).toArrow()


@contextmanager
def _records_per_arrow_batch(spark: Any, records: int) -> Iterator[None]:
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key, None)
    spark.conf.set(key, str(records))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)
