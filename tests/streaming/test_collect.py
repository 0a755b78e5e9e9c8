"""A micro-batch over the driver's byte budget: measured by Spark, read in chunks with large
values cut, validated chunk by chunk, its rejects spilled to disk; every table once."""

import base64
import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from shelfcast.ingest_config import ingest_config
from shelfcast.settings import Settings
from streaming.collect import CUT_BYTES, Budget, collect_bounded, split_by_bytes
from streaming.query import build_pipeline
from streaming.schemas import QUARANTINE
from streaming.spool import RejectSpool
from tests.support.events import sale
from tests.support.topics import read_topic

NOW = datetime(2024, 3, 4, 12, tzinfo=UTC)
RAW = ["key", "value", "topic", "partition", "offset", "timestamp"]


def test_parts_stay_within_the_budget_and_a_larger_record_goes_alone() -> None:
    sizes = pa.table(
        {
            "topic": ["a", "a", "a", "b", "a", "b"],
            "partition": pa.array([0, 0, 1, 0, 0, 0], pa.int32()),
            "offset": pa.array([0, 1, 0, 5, 2, 6], pa.int64()),
            "size": pa.array([40, 50, 10, 500, 30, 20], pa.int64()),
        }
    )
    parts = split_by_bytes(sizes, 100)
    assert [
        list(zip(*(p.column(c).to_pylist() for c in ("topic", "partition", "offset")), strict=True))
        for p in parts
    ] == [
        [("a", 0, 0), ("a", 0, 1)],  # 90 bytes: offset 2's 30 more would be 120
        [("a", 0, 2), ("a", 1, 0)],
        [("b", 0, 5)],  # 500 bytes: alone
        [("b", 0, 6)],
    ]


def test_rejects_past_the_bound_go_to_a_file_and_come_back_whole(tmp_path: Path) -> None:
    rows = [
        {
            "source_topic": "t",
            "source_partition": 0,
            "source_offset": k,
            "raw_value": b"x" * 900,
            "reason": "bad",
            "quarantined_at": NOW,
            "batch_id": 0,
        }
        for k in range(30)
    ]
    with RejectSpool(4_000, tmp_path) as spool:
        for k in range(0, 30, 3):
            spool.add(pa.Table.from_pylist(rows[k : k + 3], schema=QUARANTINE))
        assert spool.spilled and spool.num_rows == 30
        assert sum(p.num_rows for p in spool.parts()) == 30
        with spool.data() as data:
            assert data.read_all().column("source_offset").to_pylist() == list(range(30))
        (left,) = tmp_path.iterdir()
    assert not left.exists()


def kafka_frame(spark: Any, records: list[tuple[str, bytes | None, bytes]]) -> Any:
    """A batch DataFrame shaped as the Kafka sources' (topic, key, value per record)."""
    n = len(records)
    table = pa.table(
        {
            "key": pa.array([k for _, k, _ in records], pa.binary()),
            "value": pa.array([v for _, _, v in records], pa.binary()),
            "topic": [t for t, _, _ in records],
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array(range(n), pa.int64()),
            "timestamp": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    return spark.createDataFrame(table.to_pandas())


@pytest.mark.integration
def test_a_batch_over_the_budget_is_stored_once_from_chunks_with_large_values_cut(
    spark: Any, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(ingest_max_batch_bytes=1024 * 1024)
    sales = settings.topic_pos_sales
    big = [os.urandom(300_000) for _ in range(8)]  # 2.4 MB: over the 1 MB budget
    huge_key = b"k" * 100_000
    records: list[tuple[str, bytes | None, bytes]] = []
    for k in range(40):
        records.append((sales, None, json.dumps(sale(f"e{k}", item=f"I{k % 3}")).encode()))
        if k % 5 == 0:
            records.append((sales, None, big[k // 5]))
    records.append((sales, huge_key, json.dumps(sale("keyed")).encode()))
    records.append((settings.topic_pos_plans, None, b"{oops"))
    frame = kafka_frame(spark, records)
    pipeline = build_pipeline(ingest_config(settings))
    pipeline._app_id = "test-app"
    limit = pipeline.limits.max_bytes
    budget = Budget(pipeline.max_batch_bytes, 200_000, limit)
    # The small records whole in one job; the 9 large ones (2.5 MB) in another, cut.
    small, chunk = collect_bounded(frame, 0, budget)
    assert small.num_rows == 41 and small.column_names == RAW
    assert chunk.num_rows == 9
    assert sum(len(v) for v in chunk.column("value").to_pylist()) <= budget.max_batch_bytes
    cut = chunk.filter(pa.compute.is_valid(chunk.column("raw_value_size")))
    assert cut.column("raw_value_size").to_pylist() == [300_000] * 8
    assert cut.column("value").to_pylist() == [b[:CUT_BYTES] for b in big]
    assert cut.column("raw_value_sha256").to_pylist() == [
        hashlib.sha256(b).hexdigest() for b in big
    ]

    # Large records that fit come whole.
    _, fetched = collect_bounded(frame, 0, Budget(4 * 1024 * 1024, 200_000, limit))
    assert fetched.column_names == RAW
    assert max(len(v) for v in fetched.column("value").to_pylist()) == 300_000

    tight = Budget(200_000, 200_000, limit)  # three cut values of 64 KiB per part
    pieces = list(collect_bounded(frame, 0, tight))
    assert len(pieces) == 4
    for piece in pieces:
        keys, values = piece.column("key").to_pylist(), piece.column("value").to_pylist()
        assert sum(len(k or b"") + len(v or b"") for k, v in zip(keys, values, strict=True)) <= (
            tight.max_batch_bytes
        )
    offsets = [o for p in pieces for o in p.column("offset").to_pylist()]
    assert sorted(offsets) == list(range(len(records)))  # each record once

    report = pipeline.process_chunks(iter(pieces), 0)
    assert (report.records, report.stored, report.quarantined) == (len(records), 40, 10)
    quarantine = DeltaTable(str(settings.delta_dir / "quarantine")).to_pyarrow_table()
    rows = {r["source_offset"]: r for r in quarantine.to_pylist()}
    too_big = [r for r in rows.values() if r["raw_value_size"]]
    assert len(too_big) == 8
    for r in too_big:
        assert r["reason"].startswith("message is 300000 bytes, over the limit of 65536")
        assert len(r["raw_value"]) == CUT_BYTES
    (keyed,) = [r for r in rows.values() if r["raw_key_size"]]
    assert keyed["raw_key_size"] == 100_000 and "does not match" in keyed["reason"]
    assert keyed["raw_key_sha256"] == hashlib.sha256(huge_key).hexdigest()

    letters = [json.loads(m.value()) for m in read_topic(settings, settings.topic_dlq, 10)]
    by_offset = {lt["source_offset"]: lt for lt in letters}
    assert len(by_offset) == 10
    for offset, r in rows.items():
        letter = by_offset[offset]
        if r["raw_value_size"]:
            original = big[[b[:CUT_BYTES] for b in big].index(r["raw_value"])]
            assert base64.b64decode(letter["raw_value_b64"]) == original[:65_536]
            assert letter["raw_value_size"] == len(original)
            assert letter["raw_value_sha256"] == hashlib.sha256(original).hexdigest()
    assert by_offset[len(records) - 1]["contract"] == "plan/v1"
    # A replay of the batch, chunked the same way, changes nothing.
    again = build_pipeline(ingest_config(settings))
    again._app_id = "test-app"
    assert again.process_chunks(collect_bounded(frame, 0, tight), 0).replayed
    assert DeltaTable(str(settings.delta_dir / "quarantine")).to_pyarrow_table().num_rows == 10
    stored = DeltaTable(str(settings.delta_dir / "pos_sales")).to_pyarrow_table()
    assert sorted(stored.column("event_id").to_pylist()) == sorted(f"e{k}" for k in range(40))


@pytest.mark.integration
def test_a_large_record_within_the_budget_is_collected_whole_as_before(
    spark: Any, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    big = os.urandom(300_000)
    frame = kafka_frame(spark, [(settings.topic_pos_sales, None, big)])
    budget = Budget(
        settings.ingest_max_batch_bytes,
        settings.ingest_max_events_per_batch,
        settings.ingest_max_event_bytes,
    )
    (whole,) = collect_bounded(frame, 0, budget)
    assert whole.column_names == ["key", "value", "topic", "partition", "offset", "timestamp"]
    assert whole.column("value").to_pylist() == [big]


@pytest.mark.integration
def test_a_task_lost_once_is_tried_again_as_on_a_cluster(spark: Any) -> None:
    """The service's session retries a failed task (local mode's default is one attempt): a
    batch's result lost from the block manager under memory pressure failed the whole query."""
    from pyspark import TaskContext

    def lost_once(rows: Any) -> Any:
        context = TaskContext.get()
        if context is not None and context.attemptNumber() == 0:
            raise RuntimeError("lost once")
        yield from rows

    assert spark.sparkContext.parallelize(range(4), 2).mapPartitions(lost_once).count() == 4
