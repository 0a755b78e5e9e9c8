"""The foreachBatch pipeline on real Delta tables and the real dead-letter topic (no Spark)."""

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from confluent_kafka import Consumer

from contracts import DeadLetter
from shelfcast.kafka import client_config
from shelfcast.settings import Settings
from streaming.pipeline import IngestPipeline
from tests.support.events import sale
from tests.support.pipeline import NOW, pipeline, raw, totals

pytestmark = pytest.mark.integration


def test_a_replayed_batch_changes_nothing(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    batch = raw([sale("a", quantity=2), sale("b", quantity=3), sale("c", item="I2")])
    first = pipeline(settings)
    first.process(batch, 0)
    before = totals(settings)
    again = pipeline(settings)  # a restarted driver: fresh memory, same tables
    report = again.process(batch, 0)
    assert report.replayed and report.stored == 3
    assert (
        totals(settings)
        == before
        == {
            "events": ["a", "b", "c"],
            "units": 6.0,
            "event_count": 3,
            "series_events": 3,
        }
    )


def test_a_retry_after_a_restart_that_replays_is_still_a_duplicate(
    make_settings: Callable[..., Settings],
) -> None:
    # The CI failure of session 2: the replay seeded the day's index with its own ids only.
    settings = make_settings()
    first = pipeline(settings)
    first.process(raw([sale("a")]), 0)
    first.process(raw([sale("b")], first_offset=1), 1)
    restarted = pipeline(settings)
    assert restarted.process(raw([sale("b")], first_offset=1), 1).replayed
    assert restarted.process(raw([sale("a")], first_offset=2), 2).stored == 0
    assert totals(settings)["events"] == ["a", "b"]


def test_crash_after_the_first_table_still_finishes_the_rest_once(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    batch = raw([sale("a", quantity=2), sale("b", quantity=5)])
    crashed = pipeline(settings)
    new = crashed.index.new_events(crashed_split := _events(crashed, batch))
    crashed.store.append_once("pos_sales", new, "test-app", 0)  # then the process died
    assert crashed_split.num_rows == 2
    pipeline(settings).process(batch, 0)
    assert totals(settings) == {
        "events": ["a", "b"],
        "units": 7.0,
        "event_count": 2,
        "series_events": 2,
    }


def _events(p: IngestPipeline, batch: pa.Table) -> pa.Table:
    from streaming.validate import split_batch

    return split_batch(batch, 0, NOW, p.limits).events


def test_pos_retries_are_stored_once_across_batches(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    p = pipeline(settings)
    p.process(raw([sale("a"), sale("a"), sale("b")]), 0)
    report = p.process(raw([sale("a"), sale("c")], first_offset=3), 1)
    assert report.stored == 1 and report.duplicates == 1
    assert pipeline(settings).process(raw([sale("b")], first_offset=5), 2).stored == 0
    assert totals(settings)["events"] == ["a", "b", "c"]


def test_a_retry_with_another_sale_day_is_stored_once(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    p = pipeline(settings)
    p.process(raw([sale("a", day="2024-03-02", quantity=2)]), 0)
    # The POS resends "a" with a corrected clock: another sold_at day, the same sale.
    report = p.process(raw([sale("a", day="2024-03-04", quantity=2)], first_offset=1), 1)
    assert (report.stored, report.duplicates) == (0, 1)
    restarted = pipeline(settings)  # a fresh driver: nothing in memory yet
    batch = raw([sale("a", day="2024-03-03", quantity=2), sale("b", day="2024-03-04")], 2)
    assert restarted.process(batch, 2).stored == 1
    assert totals(settings) == {
        "events": ["a", "b"],
        "units": 3.0,
        "event_count": 2,
        "series_events": 2,
    }


def test_every_kind_of_bad_input_is_quarantined_and_sent_to_the_dlq(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(ingest_max_event_bytes=1024)
    future = (NOW + timedelta(days=3)).isoformat()
    bad = [
        (None, b"{oops"),
        (None, b"\xff\xfe\x00"),
        (None, json.dumps({"event_id": "m", "store_id": "S1"}).encode()),
        (None, json.dumps(sale("t", quantity="many")).encode()),
        (None, json.dumps(sale("p", unit_price=-2)).encode()),
        (None, json.dumps({**sale("f"), "sold_at": future}).encode()),
        (None, json.dumps(sale("o", pad="x" * 2000)).encode()),
        (b"S9|I9", json.dumps(sale("k")).encode()),
    ]
    good = [sale("g1"), sale("g2")]
    report = pipeline(settings).process(raw([good[0], *bad, good[1]]), 0)
    assert report.stored == 2 and report.quarantined == len(bad)

    from deltalake import DeltaTable

    quarantine = DeltaTable(str(settings.delta_dir / "quarantine")).to_pyarrow_table()
    rows = sorted(quarantine.to_pylist(), key=lambda r: r["source_offset"])
    assert [r["source_offset"] for r in rows] == list(range(1, 9))
    assert [r["raw_value"] for r in rows] == [v for _, v in bad]
    for row, words in zip(
        rows,
        [
            "not valid JSON",
            "not UTF-8",
            "missing required field",
            "field 'quantity'",
            "greater than or equal to 0",
            "in the future",
            "over the limit",
            "does not match",
        ],
        strict=True,
    ):
        assert words in row["reason"]

    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": "dlq-check",
            "session.timeout.ms": 6000,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.topic_dlq])
    letters: list[DeadLetter] = []
    for _ in range(60):
        for msg in consumer.consume(20, 0.5):
            if msg.error() is None:
                letters.append(DeadLetter.model_validate_json(msg.value()))
        if len(letters) >= len(bad):
            break
    consumer.close()
    assert sorted(letter.source_offset for letter in letters) == list(range(1, 9))
    assert all(letter.reason for letter in letters)


def test_tables_keep_their_commit_log_as_long_as_their_files(
    make_settings: Callable[..., Settings],
) -> None:
    from deltalake import DeltaTable

    settings = make_settings(delta_vacuum_retention_hours=6.5)
    pipeline(settings)
    for name in ("pos_sales", "daily_sales", "series_state", "quarantine"):
        config = DeltaTable(str(settings.delta_dir / name)).metadata().configuration
        assert config["delta.logRetentionDuration"] == "interval 7 hours"


def test_rare_batches_are_compacted_on_a_clock(make_settings: Callable[..., Settings]) -> None:
    """One batch a day (a chain sending each day at once) never reaches the batch count;
    once the hours pass, the batch after them compacts ``daily_sales``."""
    from deltalake import DeltaTable

    def live_files(settings: Settings) -> int:
        return len(DeltaTable(str(settings.delta_dir / "daily_sales")).file_uris())

    days = ["2024-03-02", "2024-03-03", "2024-03-04"]
    counted = make_settings(ingest_compact_every_batches=1000)
    clocked = make_settings(ingest_compact_every_batches=1000, ingest_compact_every_hours=1e-9)
    for settings in (counted, clocked):
        built = pipeline(settings)
        for n, day in enumerate(days):
            built.process(raw([sale(f"e{n}", day=day)], first_offset=n), n)
        built.store.compactor.close(timeout=30)
    assert live_files(counted) == len(days)  # a file a batch: the count is far off
    assert live_files(clocked) == 1
