"""``shelfcast ingest`` as a process, killed with -9 at random points while events, plans and
store records arrive; then everything must be stored exactly once."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
from deltalake import DeltaTable

from shelfcast.embedded import logged
from shelfcast.settings import Settings
from tests.support.events import plan, sale, store_record
from tests.support.tables import quarantined, stored_ids, table_rows
from tests.support.wait import wait_for

__all__ = ["caught_up", "expected_plans", "kill_and_resume", "plan_updates", "start_ingest"]


def start_ingest(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``shelfcast ingest`` on ``settings``' topics and data dir, its output to ``log``."""
    env = {
        **os.environ,
        "SHELFCAST_TOPIC_POS_SALES": settings.topic_pos_sales,
        "SHELFCAST_TOPIC_POS_PLANS": settings.topic_pos_plans,
        "SHELFCAST_TOPIC_POS_STORES": settings.topic_pos_stores,
        "SHELFCAST_TOPIC_DLQ": settings.topic_dlq,
        "SHELFCAST_TOPIC_FORECASTS": settings.topic_forecasts,
        "SHELFCAST_INGEST_TRIGGER_SECONDS": "0.5",
        "SHELFCAST_INGEST_MAX_EVENTS_PER_BATCH": "700",
        "SHELFCAST_INGEST_SOURCE": settings.ingest_source,
        "SHELFCAST_SPARK_MASTER": settings.spark_master,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shelfcast.cli",
                "ingest",
                "--data-dir",
                str(settings.data_dir),
                "--bootstrap",
                settings.bootstrap_servers,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def plan_updates(rng: random.Random) -> list[tuple[str | None, str]]:
    """Revisions of 40 plans over the store's items in random order (a few cancel the plan,
    some resent), and a few bad plans: (key, value) records of the plans topic."""
    updates: list[tuple[str | None, str]] = []
    for n in range(40):
        item = "*" if n % 5 == 0 else f"I{n % 7}"
        for revision in range(1, 2 + n % 4):
            body = plan(f"plan-{n}", revision, item=item, cancelled=revision == 3)
            updates.append((f"plan-{n}", json.dumps(body)))
    updates += [updates[k] for k in rng.sample(range(len(updates)), 20)]  # resends
    rng.shuffle(updates)
    for n in range(6):
        updates.insert(rng.randrange(len(updates)), (None, json.dumps(plan(f"bad-{n}", -1))))
    return updates


def expected_plans() -> dict[str, tuple[int, bool]]:
    """What :func:`plan_updates` leaves: each plan at its highest revision, cancelled or not."""
    return {f"plan-{n}": (1 + n % 4, 1 + n % 4 == 3) for n in range(40)}


def caught_up(settings: Settings) -> bool:
    """Whether the ingest query committed every record now on its three input topics: a
    record sent before (a late resend too) is in the tables."""
    from confluent_kafka import Consumer, TopicPartition

    from shelfcast.kafka import client_config
    from shelfcast.status import committed_offsets

    checkpoint = settings.checkpoint_dir / "ingest"
    consumer = Consumer({**client_config(settings), "group.id": "tests-caught-up"})
    try:
        for topic in (
            settings.topic_pos_sales,
            settings.topic_pos_plans,
            settings.topic_pos_stores,
        ):
            committed = committed_offsets(checkpoint, topic)
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                end = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                if committed.get(p, 0) < end:
                    return False
    finally:
        consumer.close()
    return True


def kill_and_resume(settings: Settings, produce: Callable[..., int], tmp_path: Path) -> None:
    """Three kill -9 of ``shelfcast ingest`` at random points while events, POS resends,
    plans (revisions in any order, resends, bad ones) and store records arrive; then every
    event is stored exactly once, the aggregates agree, every plan and store is at its
    highest revision and every bad plan is quarantined once."""
    source = settings.ingest_source
    rng = random.Random(11)
    log = tmp_path / "ingest.log"
    events = [sale(f"k{i}", item=f"I{i % 7}", day=f"2024-03-{1 + i % 20:02d}") for i in range(6000)]
    retries = [events[i] for i in rng.sample(range(6000), 300)]
    updates = plan_updates(rng)
    stores = [("S1", json.dumps(store_record("S1", r))) for r in (2, 1, 4, 3)]
    plans_at = [len(updates) * k // 4 for k in range(5)]

    def send_plans(part: int) -> None:
        chunk = updates[plans_at[part] : plans_at[part + 1]]
        produce(settings, chunk, topic=settings.topic_pos_plans)
        produce(settings, [stores[part]], topic=settings.topic_pos_stores)

    produce(settings, events[:2000])
    send_plans(0)
    produced = 2000
    for round_ in range(3):
        began = log.stat().st_size if log.exists() else 0
        proc = start_ingest(settings, log)
        try:
            # This start's query runs (the events stored before do not say so: a kill would
            # land while its JVM starts), and the first batch is in.
            up = logged(proc, log, began, b"ingest running", time.monotonic() + 120)
            assert up, "the query did not start: " + log.read_text()[-3000:]
            wait_for(
                lambda p=proc: len(stored_ids(settings)) > 0 or p.poll() is not None,  # type: ignore[misc]
                120,
                "the first batch",
            )
            assert proc.poll() is None, log.read_text()[-3000:]
            chunk = events[produced : produced + 1300] + retries[round_ * 100 : round_ * 100 + 100]
            produce(settings, chunk)
            send_plans(round_ + 1)
            produced += 1300
            time.sleep(rng.uniform(0.2, 2.5))  # kill at a random point, mid-batch or not
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    produce(settings, events[produced:])
    proc = start_ingest(settings, log)
    try:
        wait_for(lambda: len(set(stored_ids(settings))) == 6000, 180, "all 6000 events")
        # A late duplicate would land in a later batch: wait until every record sent is in.
        wait_for(lambda: caught_up(settings), 60, "the query to commit every record sent")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    ids = stored_ids(settings)
    if len(ids) != len(set(ids)):
        table = DeltaTable(str(settings.delta_dir / "pos_sales")).to_pandas()
        twice = table[table.event_id.duplicated(keep=False)]
        cols = ["event_id", "batch_id", "kafka_partition", "kafka_offset", "ingested_at"]
        raise AssertionError(f"stored twice:\n{twice.sort_values('event_id')[cols].head(20)}")
    assert len(ids) == len(set(ids)) == 6000, "every event stored exactly once"
    daily = DeltaTable(str(settings.delta_dir / "daily_sales")).to_pyarrow_table()
    assert sum(daily.column("event_count").to_pylist()) == 6000
    state = DeltaTable(str(settings.delta_dir / "series_state")).to_pyarrow_table()
    assert sum(state.column("total_events").to_pylist()) == 6000
    stored_plans = table_rows(settings, "plans")
    assert len(stored_plans) == 40, "one row per plan"
    assert {r["plan_id"]: (r["revision"], r["cancelled"]) for r in stored_plans} == (
        expected_plans()
    )
    assert [(r["store_id"], r["revision"]) for r in table_rows(settings, "stores")] == [("S1", 4)]
    bad = quarantined(settings, settings.topic_pos_plans)
    offsets = [(r["source_partition"], r["source_offset"]) for r in bad]
    assert len(offsets) == len(set(offsets)) == 6, "every bad plan quarantined exactly once"
    touched = state.filter(pc.is_valid(state.column("plans_changed_at"))).num_rows
    assert touched == 7, "the plans touched every series of the store"
    assert f"ingest source: {'kafka' if source == 'kafka' else 'shelfcast_kafka'}" in (
        log.read_text()
    )
