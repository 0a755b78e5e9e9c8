"""The ingest query on a real Spark and broker: in-process, and as a process killed with -9."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from shelfcast.ingest_config import ingest_config
from shelfcast.settings import Settings
from shelfcast.status import committed_offsets
from streaming.query import build_pipeline, explain_failure, start_query, stop_gracefully
from tests.support.events import plan, sale, store_record
from tests.support.ingest import kill_and_resume
from tests.support.tables import quarantined, stored_ids, table_rows
from tests.support.topics import recreate_sales_topic
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


SOURCES = pytest.mark.parametrize("source", ["kafka", "python"])


@SOURCES
def test_query_stores_good_events_once_and_quarantines_bad_ones(
    spark: Any, make_settings: Callable[..., Settings], produce: Callable[..., int], source: str
) -> None:
    settings = make_settings(ingest_source=source)
    pipeline = build_pipeline(ingest_config(settings))
    query = start_query(spark, ingest_config(settings), pipeline)
    plans_topic = settings.topic_pos_plans
    try:
        produce(settings, [sale(f"e{i}", item=f"I{i % 3}") for i in range(50)])
        produce(settings, [sale("e1"), sale("e2")])  # POS retries
        produce(settings, [(None, b"not json"), (b"x|y", b"\xff")])
        # Plans through the same query: good ones, a resend, and bad ones.
        good = [plan(f"p{i}", revision=1 + i % 2) for i in range(5)]
        produce(settings, [(p["plan_id"], json.dumps(p)) for p in good], topic=plans_topic)
        produce(settings, [("p0", json.dumps(good[0]))], topic=plans_topic)
        bad = [(None, b"not json"), ("p9", json.dumps(plan("p9", kind="price")))]
        produce(settings, bad, topic=plans_topic)
        store = json.dumps(store_record("S1", revision=3))
        produce(settings, [("S1", store), (None, b"[]")], topic=settings.topic_pos_stores)
        wait_for(lambda: len(stored_ids(settings)) == 50, 90, "50 stored events")
        wait_for(
            lambda: len(quarantined(settings, settings.topic_pos_sales)) == 2,
            30,
            "2 quarantined records",
        )
        wait_for(lambda: len(quarantined(settings, plans_topic)) == 2, 30, "2 bad plans")
        wait_for(lambda: len(table_rows(settings, "plans")) == 5, 30, "5 plans")
        wait_for(lambda: len(table_rows(settings, "stores")) == 1, 30, "the store")
        wait_for(
            lambda: len(quarantined(settings, settings.topic_pos_stores)) == 1, 30, "a bad store"
        )
    finally:
        stop_gracefully(query)
    ids = stored_ids(settings)
    assert sorted(ids) == sorted(f"e{i}" for i in range(50))
    daily = DeltaTable(str(settings.delta_dir / "daily_sales")).to_pyarrow_table()
    assert sum(daily.column("event_count").to_pylist()) == 50
    assert {r["plan_id"]: r["revision"] for r in table_rows(settings, "plans")} == {
        f"p{i}": 1 + i % 2 for i in range(5)
    }
    reasons = sorted(r["reason"] for r in quarantined(settings, plans_topic))
    assert "a price plan needs unit_price" in reasons[0] and "not valid JSON" in reasons[1]
    (shop,) = table_rows(settings, "stores")
    assert (shop["store_id"], shop["revision"], shop["country"]) == ("S1", 3, "DE")


@SOURCES
def test_exactly_once_across_kill_minus_nine(
    make_settings: Callable[..., Settings],
    produce: Callable[..., int],
    tmp_path: Path,
    source: str,
) -> None:
    kill_and_resume(make_settings(ingest_source=source), produce, tmp_path)


@SOURCES
def test_offsets_that_go_backwards_stop_the_query_with_what_to_do(
    spark: Any, make_settings: Callable[..., Settings], produce: Callable[..., int], source: str
) -> None:
    settings = make_settings(ingest_source=source, topic_partitions=1)
    query = start_query(spark, ingest_config(settings), build_pipeline(ingest_config(settings)))
    try:
        produce(settings, [sale(f"a{i}") for i in range(30)])
        wait_for(lambda: len(stored_ids(settings)) == 30, 90, "30 stored events")
        recreate_sales_topic(settings)
        produce(settings, [sale(f"b{i}") for i in range(5)])
        wait_for(lambda: not query.isActive, 60, "the query to stop")
        error = explain_failure(str(query.exception()))
    finally:
        if query.isActive:
            query.stop()
    assert len(stored_ids(settings)) == 30, "nothing of the new topic stored"
    assert "set SHELFCAST_INGEST_ON_DATA_LOSS=earliest" in error, error
    assert "offset" in error


@SOURCES
def test_offsets_that_go_backwards_resume_from_earliest_when_asked(
    spark: Any, make_settings: Callable[..., Settings], produce: Callable[..., int], source: str
) -> None:
    settings = make_settings(
        ingest_source=source, topic_partitions=1, ingest_on_data_loss="earliest"
    )
    query = start_query(spark, ingest_config(settings), build_pipeline(ingest_config(settings)))
    try:
        produce(settings, [sale(f"a{i}") for i in range(30)])
        wait_for(lambda: len(stored_ids(settings)) == 30, 90, "30 stored events")
        recreate_sales_topic(settings)
        produce(settings, [sale(f"b{i}") for i in range(5)])
        checkpoint = settings.checkpoint_dir / "ingest"
        wait_for(
            lambda: committed_offsets(checkpoint, settings.topic_pos_sales).get(0) == 5,
            60,
            "the query to see the new topic's offsets",
        )
        produce(settings, [sale(f"c{i}") for i in range(5)])
        # Ours re-reads the recreated topic from its start. Spark's own source (its
        # failOnDataLoss=false) logs the loss and goes on from the offsets it finds: records
        # written below the old position before it noticed are skipped.
        expected = {f"c{i}" for i in range(5)} | (
            {f"b{i}" for i in range(5)} if source == "python" else set()
        )
        wait_for(lambda: expected <= set(stored_ids(settings)), 60, "the new topic's events")
        assert query.isActive
    finally:
        stop_gracefully(query)


@SOURCES
@pytest.mark.parametrize("policy", ["fail", "earliest"])
def test_records_deleted_before_they_were_read_are_never_skipped_silently(
    spark: Any,
    make_settings: Callable[..., Settings],
    produce: Callable[..., int],
    source: str,
    policy: str,
) -> None:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    from shelfcast.kafka import client_config

    settings = make_settings(ingest_source=source, topic_partitions=1, ingest_on_data_loss=policy)
    query = start_query(spark, ingest_config(settings), build_pipeline(ingest_config(settings)))
    produce(settings, [sale(f"a{i}") for i in range(30)])
    wait_for(lambda: len(stored_ids(settings)) == 30, 90, "30 stored events")
    stop_gracefully(query)
    produce(settings, [sale(f"b{i}") for i in range(20)])  # offsets 30-49, not read yet
    # Retention, made to happen now: the log starts at 40.
    admin = AdminClient(client_config(settings))
    for future in admin.delete_records([TopicPartition(settings.topic_pos_sales, 0, 40)]).values():
        future.result(30)
    query = start_query(spark, ingest_config(settings), build_pipeline(ingest_config(settings)))
    try:
        if policy == "fail":
            wait_for(lambda: not query.isActive, 60, "the query to stop")
            assert "SHELFCAST_INGEST_ON_DATA_LOSS=earliest" in explain_failure(
                str(query.exception())
            )
            assert len(stored_ids(settings)) == 30
        else:
            kept = {f"b{i}" for i in range(10, 20)}
            wait_for(lambda: kept <= set(stored_ids(settings)), 60, "the records still there")
            assert len(stored_ids(settings)) == 40
    finally:
        if query.isActive:
            stop_gracefully(query)


def test_a_kill_while_the_first_offsets_were_written_leaves_nothing_that_blocks_a_start(
    tmp_path: Path,
) -> None:
    from streaming.query import clear_unwritten_first_offsets

    # What a kill -9 left in CI: the first batch's offsets half-written, never renamed.
    offsets = tmp_path / "offsets"
    offsets.mkdir()
    (offsets / ".0.81857ac6.tmp").write_bytes(b"")
    (offsets / "..0.81857ac6.tmp.crc").write_bytes(b"")
    assert sorted(clear_unwritten_first_offsets(tmp_path)) == [
        "..0.81857ac6.tmp.crc",
        ".0.81857ac6.tmp",
    ]
    assert not list(offsets.iterdir())
    # A logged batch: Spark resumes from it, nothing is touched.
    (offsets / "0").write_text("v1")
    (offsets / ".1.abc.tmp").write_bytes(b"")
    assert clear_unwritten_first_offsets(tmp_path) == []
    assert len(list(offsets.iterdir())) == 2


@SOURCES
def test_a_checkpoint_from_before_the_plans_topics_resumes_and_reads_them_from_their_start(
    spark: Any, make_settings: Callable[..., Settings], produce: Callable[..., int], source: str
) -> None:
    from dataclasses import replace

    settings = make_settings(ingest_source=source)
    config = ingest_config(settings)
    # The query as an older release ran it: subscribed to the sales topic alone.
    sales_only = replace(
        config,
        topics=replace(
            config.topics, plans=settings.topic_pos_sales, stores=settings.topic_pos_sales
        ),
    )
    assert sales_only.source.topics == (settings.topic_pos_sales,)
    produce(settings, [sale(f"a{i}") for i in range(20)])
    plans = [plan(f"p{i}") for i in range(3)]
    produce(
        settings, [(p["plan_id"], json.dumps(p)) for p in plans], topic=settings.topic_pos_plans
    )
    query = start_query(spark, sales_only, build_pipeline(config))
    try:
        wait_for(lambda: len(stored_ids(settings)) == 20, 90, "20 stored events")
    finally:
        stop_gracefully(query)
    assert table_rows(settings, "plans") == []
    produce(settings, [sale(f"b{i}") for i in range(5)])
    query = start_query(spark, config, build_pipeline(config))
    try:
        wait_for(lambda: len(stored_ids(settings)) == 25, 90, "the new events")
        wait_for(lambda: len(table_rows(settings, "plans")) == 3, 60, "the plans sent before")
    finally:
        stop_gracefully(query)
    assert sorted(stored_ids(settings)) == sorted(
        [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(5)]
    )
