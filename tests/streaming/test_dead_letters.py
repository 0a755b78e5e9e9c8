"""Dead letters of any size on the real broker: no bad record stops the stream."""

import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import jsonschema
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from contracts import DeadLetter, load_schema
from shelfcast.ingest_config import ingest_config
from shelfcast.kafka import producer_config
from shelfcast.settings import Settings
from streaming.dead_letters import DeadLetterTopic
from streaming.query import build_pipeline, start_query, stop_gracefully
from streaming.schemas import QUARANTINE
from tests.support.events import sale
from tests.support.pipeline import NOW, pipeline, raw, totals
from tests.support.tables import stored_ids
from tests.support.topics import read_topic
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def letters(settings: Settings, expect: int) -> dict[int, dict[str, object]]:
    found = read_topic(settings, settings.topic_dlq, expect)
    out = {}
    for msg in found:
        body = json.loads(msg.value())
        DeadLetter.model_validate(body)
        jsonschema.validate(body, load_schema("dead_letter", 1))
        out[body["source_offset"]] = body
    assert len(out) == expect
    return out


def test_a_record_of_any_size_is_quarantined_and_the_stream_goes_on(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    big, huge = os.urandom(900_000), os.urandom(3_000_000)  # base64 of either is over 1 MB
    batch = raw([sale("g1"), (None, big), (b"k" * 200_000, huge), (None, b"{oops"), sale("g2")])
    report = pipeline(settings).process(batch, 0)
    assert (report.stored, report.quarantined) == (2, 3)
    assert pipeline(settings).process(raw([sale("g3")], first_offset=5), 1).stored == 1
    assert totals(settings)["events"] == ["g1", "g2", "g3"]

    rows = DeltaTable(str(settings.delta_dir / "quarantine")).to_pyarrow_table().to_pylist()
    whole = {r["source_offset"]: (r["raw_key"], r["raw_value"]) for r in rows}
    assert whole == {1: (None, big), 2: (b"k" * 200_000, huge), 3: (None, b"{oops")}

    sent = letters(settings, 3)
    for offset, value in ((1, big), (2, huge)):
        body = sent[offset]
        assert base64.b64decode(str(body["raw_value_b64"])) == value[:65_536]
        assert body["raw_value_size"] == len(value)
        assert body["raw_value_sha256"] == hashlib.sha256(value).hexdigest()
    assert sent[2]["raw_key_size"] == 200_000
    assert base64.b64decode(str(sent[2]["raw_key_b64"])) == b"k" * 65_536
    assert "raw_key_size" not in sent[1]
    # A record that fits reads exactly as a v1 letter did before the size fields existed.
    assert set(sent[3]) == set(load_schema("dead_letter", 1)["required"]) | {
        "source_timestamp",
        "raw_key_b64",
    }
    assert base64.b64decode(str(sent[3]["raw_value_b64"])) == b"{oops"


def reject(offset: int, value: bytes, reason: str = "bad") -> dict[str, object]:
    return {
        "source_topic": "pos.sales",
        "source_partition": 0,
        "source_offset": offset,
        "source_timestamp": NOW,
        "raw_key": None,
        "raw_value": value,
        "reason": reason,
        "quarantined_at": NOW,
        "batch_id": 0,
    }


def test_a_letter_refused_as_too_large_goes_without_its_copy_or_is_skipped(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings()
    # A producer whose limit (1,000 bytes, the least it takes) is below most letters.
    topic = DeadLetterTopic(
        producer_config(settings, **{"message.max.bytes": 1_000}), settings.topic_dlq
    )
    rejects = [reject(1, os.urandom(100_000)), reject(2, b"small"), reject(3, b"x", "why " * 2_000)]
    with caplog.at_level(logging.ERROR, logger="shelfcast.ingest"):
        topic.publish(pa.Table.from_pylist(rejects, schema=QUARANTINE))
    topic.close()
    sent = letters(settings, 2)
    assert sent[1]["raw_value_b64"] is None and sent[1]["raw_value_size"] == 100_000
    assert base64.b64decode(str(sent[2]["raw_value_b64"])) == b"small"
    # Offset 3's reason alone is over the limit: logged and skipped, the batch goes on.
    assert "pos.sales/0/3 refused" in caplog.text


def quarantined(settings: Settings) -> int:
    path = str(settings.delta_dir / "quarantine")
    return DeltaTable(path).to_pyarrow_table(columns=["source_offset"]).num_rows


def test_the_query_goes_on_past_a_record_at_the_brokers_message_limit(
    spark: Any, make_settings: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = make_settings()
    ingest = build_pipeline(ingest_config(settings))
    query = start_query(spark, ingest_config(settings), ingest)
    big = os.urandom(990_000)  # just under the producer's and broker's ~1 MB default
    try:
        produce(settings, [sale("before")])
        produce(settings, [(None, big)])
        produce(settings, [sale("after")])
        wait_for(lambda: quarantined(settings) == 1, 120, "the record quarantined")
        produce(settings, [sale("later")])
        wait_for(lambda: len(stored_ids(settings)) == 3, 60, "every event after it")
        assert query.isActive
    finally:
        stop_gracefully(query)
        ingest.dead_letters.close()  # type: ignore[attr-defined]
    quarantine = DeltaTable(str(settings.delta_dir / "quarantine")).to_pyarrow_table()
    assert quarantine.column("raw_value").to_pylist() == [big]
    assert sorted(stored_ids(settings)) == ["after", "before", "later"]
    (sent,) = letters(settings, 1).values()
    assert sent["raw_value_size"] == len(big)
