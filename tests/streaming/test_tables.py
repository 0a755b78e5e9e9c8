"""The ``series_state`` rows the table store answers with (the waiting ones kept in memory,
the rest read) against the Delta table itself (real delta-rs)."""

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from streaming.aggregate import update_series_state
from streaming.schemas import SERIES_STATE
from streaming.tables import TableStore

NOW = datetime(2024, 3, 4, 12, tzinfo=UTC)


def events(*keys: tuple[str, str]) -> pa.Table:
    n = len(keys)
    return pa.table(
        {
            "store_id": [s for s, _ in keys],
            "item_id": [i for _, i in keys],
            "sale_date": pa.array([date(2024, 3, 4)] * n, pa.date32()),
            "sold_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            "kafka_timestamp": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def on_disk(root: Path) -> dict[str, dict[str, Any]]:
    rows = TableStore(root).read("series_state").to_pylist()
    return {f"{r['store_id']}|{r['item_id']}": r for r in rows}


def ingest(store: TableStore, batch_id: int, *keys: tuple[str, str]) -> bool:
    state = update_series_state(store.series_rows(list(keys)), events(*keys), batch_id, NOW)
    return store.upsert_series_once(state, "app", batch_id)


def test_rows_by_key_follow_every_write_and_a_replay(tmp_path: Path) -> None:
    store = TableStore(tmp_path)
    store.ensure()
    assert store.series_state() == {}
    assert store.series_by_key(["S1|I1"]) == {}

    assert ingest(store, 0, ("S1", "I1"), ("S1", "I2"))
    assert ingest(store, 1, ("S1", "I1"), ("S2", "I1"))
    every = ["S1|I1", "S1|I2", "S2|I1"]
    assert store.series_by_key(every) == store.series_state() == on_disk(tmp_path)
    assert store.series_by_key(["S1|I1"])["S1|I1"]["events_since_retrain"] == 2

    # A replayed batch computes from state that already holds it; nothing is written and
    # the rows kept are read afresh, so they do not keep the double count.
    assert not ingest(store, 1, ("S1", "I1"))
    assert store.series_by_key(["S1|I1"])["S1|I1"]["events_since_retrain"] == 2
    assert store.series_by_key(every) == on_disk(tmp_path)

    rows = [{**store.series_state()["S2|I1"], "status": "queued"}]
    assert store.upsert_series_once(pa.Table.from_pylist(rows, schema=SERIES_STATE), "h", 0)
    assert store.series_by_key(every) == on_disk(tmp_path)
    assert store.series_rows([("S2", "I1"), ("S9", "new")]).to_pylist() == rows
    # Stores and items asked for that pair up into a series not asked for: not in the answer.
    assert set(store.series_by_key(["S1|I2", "S2|I1"])) == {"S1|I2", "S2|I1"}
    assert store.series_rows([("S1", "I2"), ("S2", "I1")]).num_rows == 2
    assert sorted(store.series_keys()) == [("S1", "I1"), ("S1", "I2"), ("S2", "I1")]


def test_the_waiting_series_follow_every_write_and_a_fresh_read(tmp_path: Path) -> None:
    store = TableStore(tmp_path)
    store.ensure()
    assert store.waiting_series() == set()
    ingest(store, 0, ("S1", "I1"), ("S1", "I2"), ("S2", "I1"))
    assert store.waiting_series() == {"S1|I1", "S1|I2", "S2|I1"}

    state = store.series_state()
    handed = [
        {**state["S1|I1"], "events_since_retrain": 0, "days_since_retrain": 0},
        {**state["S1|I2"], "events_since_retrain": 0, "plan_changes_since_retrain": 2},
    ]
    assert store.upsert_series_once(pa.Table.from_pylist(handed, schema=SERIES_STATE), "h", 0)
    assert store.waiting_series() == {"S1|I2", "S2|I1"}
    # A replay drops the rows kept; read afresh, the table says the same.
    assert not store.upsert_series_once(pa.Table.from_pylist(handed, schema=SERIES_STATE), "h", 0)
    assert store.waiting_series() == {"S1|I2", "S2|I1"} == TableStore(tmp_path).waiting_series()


def test_only_waiting_rows_are_kept_the_rest_is_read_from_the_table(tmp_path: Path) -> None:
    store = TableStore(tmp_path)
    store.ensure()
    ingest(store, 0, ("S1", "I1"), ("S1", "I2"))
    state = store.series_state()
    handed = [{**state["S1|I1"], "events_since_retrain": 0, "days_since_retrain": 0}]
    assert store.upsert_series_once(pa.Table.from_pylist(handed, schema=SERIES_STATE), "h", 0)
    assert store.waiting_series() == {"S1|I2"}

    # Another writer (here only to tell the two apart: the driver is the one writer) changes
    # both rows. The series not waiting is read from the table; the waiting one is kept.
    other = TableStore(tmp_path)
    both = [{**r, "status": "failed"} for r in other.series_state().values()]
    assert other.upsert_series_once(pa.Table.from_pylist(both, schema=SERIES_STATE), "x", 0)
    rows = store.series_by_key(["S1|I1", "S1|I2"])
    assert rows["S1|I1"]["status"] == "failed"
    assert rows["S1|I2"]["status"] != "failed"


def test_a_changed_mapping_does_not_change_the_rows_kept(tmp_path: Path) -> None:
    store = TableStore(tmp_path)
    store.ensure()
    ingest(store, 0, ("S1", "I1"))
    state = store.series_by_key(["S1|I1"])
    state["S1|I1"] = {**state["S1|I1"], "status": "queued"}
    del state["S1|I1"]

    assert store.series_by_key(["S1|I1"]) == on_disk(tmp_path)
    assert store.series_by_key(["S1|I1"])["S1|I1"]["status"] != "queued"


def test_a_vacuum_shorter_than_a_retrain_may_read_is_refused(tmp_path: Path) -> None:
    from shelfcast.errors import ConfigError
    from shelfcast.settings import load_settings
    from streaming.errors import TableError

    store = TableStore(tmp_path)
    store.ensure()
    ingest(store, 0, ("S1", "I1"))
    handed = store.table("series_state").version()  # a retrain was handed this version
    ingest(store, 1, ("S1", "I1"))  # the merge replaces the file it reads
    for hours in (0, 0.5, float("nan"), float("inf")):
        with pytest.raises(TableError, match="SHELFCAST_DELTA_VACUUM_RETENTION_HOURS to at least"):
            store.maintain(hours)
        with pytest.raises(ConfigError, match=r"retention of .* hours is refused|finite number"):
            load_settings(data_dir=tmp_path, delta_vacuum_retention_hours=hours)
    assert store.read("series_state", version=handed).num_rows == 1
    store.maintain(1)
    assert store.read("series_state", version=handed).num_rows == 1
    assert load_settings(data_dir=tmp_path, delta_vacuum_retention_hours=1)


def test_a_table_from_before_the_family_column_gains_it_and_stays_readable(
    tmp_path: Path,
) -> None:
    from deltalake import DeltaTable, write_deltalake

    from shelfcast.settings import load_settings
    from shelfcast.status import render_status, series_counts

    # The table as created before "family" (and the columns added after it) existed.
    old = pa.schema(list(SERIES_STATE)[: SERIES_STATE.get_field_index("family")])
    store = TableStore(tmp_path / "delta")
    DeltaTable.create(store.uri("series_state"), old, name="series_state")
    rows = update_series_state(SERIES_STATE.empty_table(), events(("S1", "I1")), 0, NOW)
    write_deltalake(store.uri("series_state"), rows.select(old.names), mode="append")
    settings = load_settings(data_dir=tmp_path)
    assert series_counts(settings) == ({"new": 1}, {})  # status reads the old table

    store.ensure()
    table = store.table("series_state")
    assert table.schema().to_arrow().names == SERIES_STATE.names
    assert table.protocol().min_writer_version == 2  # no table features
    assert store.series_state()["S1|I1"]["family"] is None

    done = {**store.series_state()["S1|I1"], "status": "done", "family": "combo"}
    assert store.upsert_series_once(pa.Table.from_pylist([done], schema=SERIES_STATE), "h", 0)
    series, families = series_counts(settings)
    assert series == {"done": 1} and families == {"combo": 1}
    unreachable = {"error": "not reachable"}
    status = {"service": {}, "lag": unreachable, "coordinator": unreachable}
    text = render_status({**status, "series": series, "families": families})
    assert "forecasts by family: combo 1" in text


def test_a_batch_adds_its_days_into_daily_sales_whether_new_late_or_both(tmp_path: Path) -> None:
    from datetime import timedelta

    from streaming.schemas import DAILY_SALES

    store = TableStore(tmp_path)
    store.ensure()
    first = date(2024, 1, 1)

    def days(rows: list[tuple[str, int, float]], batch: int) -> None:
        table = pa.table(
            {
                "store_id": [s for s, _, _ in rows],
                "item_id": ["I"] * len(rows),
                "day": pa.array([first + timedelta(days=d) for _, d, _ in rows], pa.date32()),
                "units": [u for _, _, u in rows],
                "revenue": [0.0] * len(rows),
                "returns": [0.0] * len(rows),
                "event_count": [1] * len(rows),
                "updated_batch_id": [batch] * len(rows),
            },
            schema=DAILY_SALES,
        )
        assert store.add_daily_once(table, "app", batch)

    days([(s, d, 1.0) for s in ("S1", "S2") for d in range(30)], 1)
    store.compact(["daily_sales"])  # one file a store, spanning every day
    days([("S1", 30, 2.0), ("S2", 30, 2.0)], 2)  # a new day: no stored day can match
    days([("S1", 30, 3.0)], 3)  # the same day again
    days([("S1", 3, 4.0), ("S2", 31, 5.0)], 4)  # a late day and a new one in one batch
    rows = store.read("daily_sales").to_pylist()
    got = {(r["store_id"], (r["day"] - first).days): (r["units"], r["event_count"]) for r in rows}
    assert len(rows) == len(got) == 2 * 30 + 3
    assert got[("S1", 30)] == (5.0, 2) and got[("S2", 30)] == (2.0, 1)
    assert got[("S1", 3)] == (5.0, 2) and got[("S2", 31)] == (5.0, 1)
    assert got[("S2", 3)] == (1.0, 1)
