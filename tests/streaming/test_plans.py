"""Plans and store records through the foreachBatch pipeline on real Delta tables and the
real dead-letter topic (no Spark), and what a plan change makes due."""

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from contracts import DeadLetter, load_schema
from shelfcast.ingest_config import ingest_config
from shelfcast.settings import Settings
from streaming.handoff import Handoff
from streaming.pipeline import IngestPipeline
from streaming.plans import changed_rows, latest_revisions, touched_series
from streaming.query import build_pipeline
from streaming.schemas import PLANS, STORES
from streaming.thresholds import ThresholdStore
from streaming.trigger import Thresholds, due_series
from tests.support.events import plan, sale, store_record
from tests.support.topics import read_topic
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
NOW = datetime(2024, 3, 4, 12, tzinfo=UTC)


class Batches:
    """Raw Kafka records of the three topics, as the source hands them to foreachBatch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.offset = 0
        self.pipeline = self.fresh()

    def fresh(self) -> IngestPipeline:
        """A pipeline as a restarted driver builds it: fresh memory, same tables."""
        built = build_pipeline(ingest_config(self.settings))
        built._app_id = "test-app"
        return built

    def raw(self, records: list[tuple[str, Any]]) -> pa.Table:
        """``(kind, record)``: kind ``sale``, ``plan`` or ``store``; a record is a dict (sent
        as JSON, keyed by nothing) or a raw ``(key, value)`` pair."""
        topics = {
            "sale": self.settings.topic_pos_sales,
            "plan": self.settings.topic_pos_plans,
            "store": self.settings.topic_pos_stores,
        }
        pairs = [(None, json.dumps(r).encode()) if isinstance(r, dict) else r for _, r in records]
        n = len(pairs)
        table = pa.table(
            {
                "key": pa.array([k for k, _ in pairs], pa.binary()),
                "value": pa.array([v for _, v in pairs], pa.binary()),
                "topic": [topics[kind] for kind, _ in records],
                "partition": pa.array([0] * n, pa.int32()),
                "offset": pa.array(range(self.offset, self.offset + n), pa.int64()),
                "timestamp": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            }
        )
        self.offset += n
        return table

    def run(self, batch_id: int, records: list[tuple[str, Any]]) -> Any:
        return self.pipeline.process(self.raw(records), batch_id)


def table(settings: Settings, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        DeltaTable(str(settings.delta_dir / name)).to_pyarrow_table().to_pylist()
    )
    return rows


def plans(settings: Settings) -> dict[str, tuple[int, bool, str, str]]:
    return {
        r["plan_id"]: (r["revision"], r["cancelled"], r["store_id"], r["item_id"])
        for r in table(settings, "plans")
    }


def state(settings: Settings) -> dict[str, dict[str, Any]]:
    return {f"{r['store_id']}|{r['item_id']}": r for r in table(settings, "series_state")}


def test_tables_have_the_shape_the_retrain_side_reads(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    Batches(settings).run(0, [("plan", plan("p1", depth=0.25)), ("store", store_record())])
    ts = pa.timestamp("us", tz="UTC")
    assert [(f.name, f.type) for f in PLANS] == [
        ("plan_id", pa.string()),
        ("revision", pa.int64()),
        ("cancelled", pa.bool_()),
        ("store_id", pa.string()),
        ("item_id", pa.string()),
        ("start_date", pa.date32()),
        ("end_date", pa.date32()),
        ("kind", pa.string()),
        ("depth", pa.float64()),
        ("unit_price", pa.float64()),
        ("published_at", ts),
    ]
    assert [(f.name, f.type) for f in STORES] == [
        ("store_id", pa.string()),
        ("revision", pa.int64()),
        ("country", pa.string()),
        ("subdivision", pa.string()),
        ("open_weekdays", pa.list_(pa.int32())),
        ("store_type", pa.string()),
        ("assortment", pa.string()),
        ("attributes_json", pa.string()),
        ("published_at", ts),
    ]
    plans_table = DeltaTable(str(settings.delta_dir / "plans"))
    assert plans_table.metadata().partition_columns == ["store_id"]
    assert DeltaTable(str(settings.delta_dir / "stores")).metadata().partition_columns == []
    (row,) = table(settings, "plans")
    assert row == {
        "plan_id": "p1",
        "revision": 1,
        "cancelled": False,
        "store_id": "S1",
        "item_id": "*",
        "start_date": date(2024, 3, 20),
        "end_date": date(2024, 3, 26),
        "kind": "promotion",
        "depth": 0.25,
        "unit_price": None,
        "published_at": datetime(2024, 3, 4, 8, tzinfo=UTC),
    }
    (shop,) = table(settings, "stores")
    assert shop["open_weekdays"] == [1, 2, 3, 4, 5, 6] and shop["attributes_json"] is None


def test_the_highest_revision_wins_a_cancellation_stays_and_a_replay_changes_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    batches = Batches(settings)
    batches.run(0, [("plan", plan("p1", 2)), ("plan", plan("p2", 1)), ("store", store_record())])
    assert plans(settings) == {"p1": (2, False, "S1", "*"), "p2": (1, False, "S1", "*")}
    # Lower and equal revisions change nothing; in one batch the highest of a plan wins.
    second = [
        ("plan", plan("p1", 1, item="I9")),
        ("plan", plan("p2", 1, item="I9")),
        ("plan", plan("p2", 3, cancelled=True)),
        ("plan", plan("p2", 2, item="I7")),
        ("store", store_record(revision=0, country="FR")),
        ("store", store_record(revision=2, subdivision="BY", attributes={"promo2": True})),
    ]
    report = batches.run(1, second)
    assert (report.plans, report.stores) == (1, 1)
    after = plans(settings)
    assert after == {"p1": (2, False, "S1", "*"), "p2": (3, True, "S1", "*")}
    (shop,) = table(settings, "stores")
    assert (shop["revision"], shop["country"], shop["subdivision"]) == (2, "DE", "BY")
    assert json.loads(shop["attributes_json"]) == {"promo2": True}
    # Spark replays batch 1 after a crash: a restarted driver, the same records.
    versions = {n: DeltaTable(str(settings.delta_dir / n)).version() for n in ("plans", "stores")}
    batches.pipeline = batches.fresh()
    batches.offset -= len(second)
    assert batches.run(1, second).plans == 0
    assert plans(settings) == after
    assert versions == {
        n: DeltaTable(str(settings.delta_dir / n)).version() for n in ("plans", "stores")
    }


def test_bad_plans_and_stores_are_quarantined_and_dead_lettered_with_reasons(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    bad = [
        ("plan", (None, b"{oops")),
        ("plan", plan("p1", kind="price")),  # no unit_price
        ("plan", plan("p2", end_date="2024-03-01")),  # ends before it starts
        ("plan", (b"other-id", json.dumps(plan("p3")).encode())),
        ("store", store_record(country="Germany")),
        ("store", store_record(open_weekdays=[0])),
    ]
    report = Batches(settings).run(0, [("sale", sale("s1")), *bad, ("plan", plan("ok"))])
    assert (report.stored, report.quarantined, report.plans) == (1, 6, 1)
    rows = table(settings, "quarantine")
    reasons = {r["source_offset"]: (r["source_topic"], r["reason"]) for r in rows}
    assert reasons[1] == (settings.topic_pos_plans, reasons[1][1])
    assert "not valid JSON" in reasons[1][1]
    assert "a price plan needs unit_price" in reasons[2][1]
    assert "is before start_date" in reasons[3][1]
    assert "does not match the plan's plan_id" in reasons[4][1]
    assert reasons[5][0] == settings.topic_pos_stores and "field 'country'" in reasons[5][1]
    assert "ISO numbers" in reasons[6][1]
    assert set(plans(settings)) == {"ok"}

    letters = {}
    for msg in read_topic(settings, settings.topic_dlq, 6):
        body = json.loads(msg.value())
        jsonschema.validate(body, load_schema("dead_letter", 1))
        letters[body["source_offset"]] = DeadLetter.model_validate(body)
    assert {o: (lt.contract, lt.reason) for o, lt in letters.items()} == {
        o: ("plan/v1" if t == settings.topic_pos_plans else "store/v1", why)
        for o, (t, why) in reasons.items()
    }


def test_a_plan_touches_the_known_series_it_covers_and_one_for_an_unknown_store_is_kept(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    batches = Batches(settings)
    batches.run(
        0,
        [
            ("sale", sale("a", "S1", "I1")),
            ("sale", sale("b", "S1", "I2")),
            ("sale", sale("c", "S2", "I1")),
        ],
    )
    report = batches.run(
        1,
        [
            ("plan", plan("whole-store")),
            ("plan", plan("one", item="I2", store="S2")),
            ("plan", plan("later", store="S9")),
        ],
    )
    assert report.plan_series == (("S1", "I1"), ("S1", "I2"))
    rows = state(settings)
    assert {k: r["plan_changes_since_retrain"] for k, r in rows.items()} == {
        "S1|I1": 1,
        "S1|I2": 1,
        "S2|I1": 0,
    }
    assert rows["S1|I1"]["plans_changed_at"] is not None
    assert rows["S2|I1"]["plans_changed_at"] is None
    assert rows["S1|I1"]["total_events"] == 1  # the sales counters are untouched
    assert "S2|I2" not in rows and "S9|*" not in rows  # a plan alone creates no series
    assert set(plans(settings)) == {"whole-store", "one", "later"}

    # The store's first sales arrive: the series is new (due for its sales); the plan kept
    # for it is in the table for its first retrain. A new revision of a store's record
    # touches every series of the store.
    batches.run(2, [("sale", sale("d", "S9", "I1"))])
    assert plans(settings)["later"] == (1, False, "S9", "*")
    report = batches.run(3, [("store", store_record("S1")), ("plan", plan("one", 2, "S2", "I1"))])
    assert report.plan_series == (("S1", "I1"), ("S1", "I2"), ("S2", "I1"))
    rows = state(settings)
    assert rows["S1|I1"]["plan_changes_since_retrain"] == 2
    assert rows["S2|I1"]["plan_changes_since_retrain"] == 1  # moved to I1 from I2
    assert rows["S9|I1"]["plan_changes_since_retrain"] == 0


def test_revisions_and_touches_are_pure() -> None:
    rows = pa.Table.from_pylist(
        [
            {"plan_id": "a", "revision": 1, "store_id": "S", "item_id": "I1"},
            {"plan_id": "a", "revision": 3, "store_id": "S", "item_id": "I2"},
            {"plan_id": "a", "revision": 3, "store_id": "S", "item_id": "I3"},
            {"plan_id": "b", "revision": 0, "store_id": "T", "item_id": "*"},
        ]
    )
    latest = latest_revisions(rows, "plan_id")
    assert latest.column("item_id").to_pylist() == ["I2", "*"]
    stored = {"a": {"plan_id": "a", "revision": 2, "store_id": "S", "item_id": "I1"}}
    changes = changed_rows(latest, stored, "plan_id")
    assert [(c.before is not None, c.after["plan_id"]) for c in changes] == [
        (True, "a"),
        (False, "b"),
    ]
    known = {"S": {"I1", "I2", "I4"}, "T": {"I1", "I2"}}
    assert touched_series(changes, [], known) == {
        ("S", "I1"),
        ("S", "I2"),
        ("T", "I1"),
        ("T", "I2"),
    }
    assert changed_rows(latest, {"a": {"revision": 3}, "b": {"revision": 0}}, "plan_id") == []


def row(key: str, events: int = 0, plan_changes: int = 0, **extra: Any) -> dict[str, Any]:
    store_id, item_id = key.split("|")
    return {
        "store_id": store_id,
        "item_id": item_id,
        "events_since_retrain": events,
        "days_since_retrain": 1 if events else 0,
        "plan_changes_since_retrain": plan_changes,
        "status": "done",
        **extra,
    }


def test_a_plan_change_is_due_regardless_of_min_new_events_and_cooldown() -> None:
    now = datetime.now(UTC)
    just = now - timedelta(seconds=5)
    rows = [
        row("S|plan", plan_changes=1),
        row("S|plan-cooling", plan_changes=2, last_submitted_at=just),
        row("S|few-sales-and-plan", events=2, plan_changes=1),
        row("S|sales-and-plan", events=60, plan_changes=1),
        row("S|sales-cooling", events=60, last_submitted_at=just),
        row("S|busy", plan_changes=1, status="running", last_submitted_at=just),
        row("S|nothing"),
    ]
    due = {d.key: d.kind for d in due_series(rows, Thresholds(min_new_events=50), now)}
    assert due == {
        "S|plan": "plan",
        "S|plan-cooling": "plan",
        "S|few-sales-and-plan": "plan",
        "S|sales-and-plan": "sales",
    }


def test_the_hand_off_passes_the_reason_and_a_plan_job_keeps_the_new_sales(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    batches = Batches(settings)
    ThresholdStore(settings.data_dir).set({"min_new_events": "3", "cooldown_seconds": "3600"})

    class Coordinator:
        def __init__(self) -> None:
            self.submitted: list[tuple[Any, ...]] = []

        def submit(self, due: list[tuple[Any, ...]], version: int) -> None:
            self.submitted.extend(due)

        def peek_updates(self) -> list[dict[str, Any]]:
            return []

        def ack_updates(self, seq: int) -> None: ...

    coordinator = Coordinator()
    handoff = Handoff(
        batches.pipeline.store,
        ThresholdStore(settings.data_dir),
        coordinator,
        lambda: batches.pipeline.app_id,
        batches.pipeline.lock,
    )
    batches.pipeline.after_commit.append(handoff.after_batch)
    sales = [("sale", sale(f"e{k}", "S1", "I1", quantity=1.0)) for k in range(3)]
    batches.run(0, [*sales, ("sale", sale("f0", "S1", "I2"))])
    assert [(d[0], d[1], d[4]) for d in coordinator.submitted] == [("S1", "I1", "sales")]
    assert len(coordinator.submitted[0]) == 6  # ..., reason, the served model version
    assert coordinator.submitted[0][5] is None  # nothing served yet

    # I1 is queued (busy), I2 has one new sale (below min_new_events): a plan for the whole
    # store makes I2 due at once, with reason "plan"; I1 waits until its retrain is done.
    coordinator.submitted.clear()
    report = batches.run(1, [("plan", plan("promo", 1))])
    assert report.plan_series == (("S1", "I1"), ("S1", "I2"))
    assert [(d[0], d[1], d[3], d[4]) for d in coordinator.submitted] == [("S1", "I2", 1, "plan")]
    rows = state(settings)
    assert rows["S1|I2"]["status"] == "queued"
    assert rows["S1|I2"]["plan_changes_since_retrain"] == 0
    assert rows["S1|I2"]["events_since_retrain"] == 1  # still counts toward a sales retrain
    assert rows["S1|I1"]["plan_changes_since_retrain"] == 1


def test_the_real_coordinator_takes_the_hand_offs_submission_with_its_reason(
    retrain_settings: Callable[..., Settings],
) -> None:
    """The five-element submission, straight to the coordinator actor on the session's Ray
    head: it queues the series and its retrain finishes."""
    import ray

    from retrain.cluster.client import coordinator
    from shelfcast.retrain_config import retrain_config

    settings = retrain_settings()
    actor = coordinator(retrain_config(settings), owner=True)
    waves: list[dict[str, Any]] = []
    submitted: list[tuple[Any, ...]] = []

    class Direct:
        def submit(self, due: list[tuple[Any, ...]], version: int) -> None:
            submitted.extend(due)
            waves.append(ray.get(actor.submit.remote(due, version), timeout=60))

        def peek_updates(self) -> list[dict[str, Any]]:
            return []

        def ack_updates(self, seq: int) -> None: ...

    batches = Batches(settings)
    # Sales below min_new_events: only the plan makes the series due.
    ThresholdStore(settings.data_dir).set({"min_new_events": "1000"})
    handoff = Handoff(
        batches.pipeline.store,
        ThresholdStore(settings.data_dir),
        Direct(),
        lambda: batches.pipeline.app_id,
        batches.pipeline.lock,
    )
    batches.pipeline.after_commit.append(handoff.after_batch)
    first = date(2024, 1, 1)
    history = [
        ("sale", sale(f"h{k}", "S1", "I1", (first + timedelta(days=k)).isoformat(), 3 + k % 7))
        for k in range(60)
    ]
    batches.run(0, history)
    assert submitted == []
    batches.run(1, [("plan", plan("promo", start="2024-03-05"))])
    assert [(d[0], d[1], d[3], d[4]) for d in submitted] == [("S1", "I1", 60, "plan")]
    (wave,) = waves
    assert (wave["total"], wave["skipped"]) == (1, 0)

    def finished() -> dict[str, Any]:
        found: dict[str, Any] = ray.get(actor.wave.remote(wave["wave_id"]), timeout=30)
        return found

    def settled() -> bool:
        found = finished()
        return bool(found["done"] + found["failed"] == 1)

    wait_for(settled, 180, "the plan's wave")
    found = finished()
    assert (found["done"], found["failed"]) == (1, 0), found
