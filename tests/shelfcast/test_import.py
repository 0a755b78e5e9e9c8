"""``shelfcast import``: daily history straight into real Delta tables, with the stream's
schemas and invariants; then the stream goes on from it."""

import gzip
import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from shelfcast.cli import main
from shelfcast.errors import ShelfcastError
from shelfcast.importer import import_history
from shelfcast.settings import Settings, load_settings
from streaming.bulk import IMPORTED_BATCH_ID
from streaming.schemas import DAILY_SALES, SERIES_STATE
from streaming.trigger import Thresholds, due_series
from tests.support.events import sale
from tests.support.pipeline import pipeline, raw

START = date(2024, 1, 1)


def write_csv(path: Path, series: dict[tuple[str, str], list[float]], start: date = START) -> Path:
    lines = ["date,store,item,sales"]
    for (store, item), values in series.items():
        lines += [f"{start + timedelta(days=k)},{store},{item},{v:g}" for k, v in enumerate(values)]
    with gzip.open(path, "wt") as out:
        out.write("\n".join(lines) + "\n")
    return path


def table(settings: Settings, name: str) -> pa.Table:
    return DeltaTable(str(settings.delta_dir / name)).to_pyarrow_table()


def test_a_csv_lands_as_the_stream_would_leave_it_and_twice_is_once(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    series = {
        ("S1", "I1"): [3, 0, 5, 7],
        ("S1", "I2"): [1, 1],
        ("S2", "I1"): [10, 12, 9],
    }
    path = write_csv(tmp_path / "sales.csv.gz", series)
    report = import_history(settings, path, rows_per_chunk=2)  # a chunk per store
    assert (report.rows, report.series, report.stores, report.chunks) == (9, 3, 2, 2)
    assert (report.first_day, report.last_day) == (START, START + timedelta(days=3))

    daily = table(settings, "daily_sales")
    assert daily.schema.names == DAILY_SALES.names
    rows = {(r["store_id"], r["item_id"], r["day"]): r for r in daily.to_pylist()}
    assert rows[("S1", "I1", START + timedelta(days=3))]["units"] == 7
    assert {r["event_count"] for r in rows.values()} == {0}
    assert {r["updated_batch_id"] for r in rows.values()} == {IMPORTED_BATCH_ID}
    # One file per store (daily_sales is partitioned by store): what a task reads.
    assert len(DeltaTable(str(settings.delta_dir / "daily_sales")).file_uris()) == 2

    state = {(r["store_id"], r["item_id"]): r for r in table(settings, "series_state").to_pylist()}
    assert set(state) == set(series)
    one = state[("S1", "I1")]
    assert (one["first_sale_day"], one["last_sale_day"]) == (START, START + timedelta(days=3))
    # Nothing new since a retrain: no events (the invariant total_events = sum of
    # event_count holds), no pending days; the trigger hands nothing over yet.
    assert {
        (r["total_events"], r["events_since_retrain"], r["days_since_retrain"])
        for r in state.values()
    } == {(0, 0, 0)}
    assert due_series(state.values(), Thresholds(), one["updated_at"]) == []

    again = import_history(settings, path)
    assert again.already_done
    assert table(settings, "daily_sales").num_rows == 9
    assert main(["import", str(path), "--data-dir", str(settings.data_dir)]) == 0


def test_parquet_in_the_table_names_with_revenue_and_duplicates_summed(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    path = tmp_path / "sales.parquet"
    pq.write_table(
        pa.table(
            {
                "day": pa.array([START, START, START + timedelta(days=1)], pa.date32()),
                "store_id": ["7", "7", "7"],
                "item_id": ["a", "a", "a"],
                "units": [2.0, 3.0, 4.0],
                "revenue": [4.0, 6.0, 8.0],
            }
        ),
        path,
    )
    report = import_history(settings, path)
    assert (report.rows, report.duplicates) == (2, 1)
    first = next(r for r in table(settings, "daily_sales").to_pylist() if r["day"] == START)
    assert (first["units"], first["revenue"], first["returns"]) == (5.0, 10.0, 0.0)


def test_what_the_import_refuses(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    bad_key = write_csv(tmp_path / "bad.csv.gz", {("S|1", "I1"): [1]})
    with pytest.raises(ShelfcastError, match="cannot name a series"):
        import_history(settings, bad_key)
    future = write_csv(tmp_path / "future.csv.gz", {("S1", "I1"): [1]}, date.today() + timedelta(2))
    with pytest.raises(ShelfcastError, match="after today"):
        import_history(settings, future)
    missing = tmp_path / "missing.csv"
    missing.write_text("date,store,sales\n2024-01-01,1,3\n")
    with pytest.raises(ShelfcastError, match="lacks columns"):
        import_history(settings, missing)
    # A running service (its status file fresh and not stopped) is the tables' only writer.
    settings.service_status_file.parent.mkdir(parents=True)
    settings.service_status_file.write_text(json.dumps({"started_at": "now"}))
    with pytest.raises(ShelfcastError, match="stop it first"):
        import_history(settings, write_csv(tmp_path / "ok.csv.gz", {("S1", "I1"): [1]}))
    assert main(["import", str(missing), "--data-dir", str(settings.data_dir)]) == 2


@pytest.mark.integration
def test_the_stream_goes_on_from_an_import(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    history = write_csv(tmp_path / "h.csv.gz", {("S1", "I1"): [4.0] * 10, ("S1", "I2"): [2.0] * 10})
    import_history(settings, history)
    ingest = pipeline(settings)
    day = (START + timedelta(days=10)).isoformat()
    report = ingest.process(raw([sale("e1", day=day, quantity=3), sale("e2", day=day)]), 0)
    assert report.stored == 2
    state = {(r["store_id"], r["item_id"]): r for r in table(settings, "series_state").to_pylist()}
    one = state[("S1", "I1")]
    # The ledger counts the streamed events on top of the imported days.
    assert (one["total_events"], one["events_since_retrain"], one["days_since_retrain"]) == (
        2,
        2,
        1,
    )
    assert one["first_sale_day"] == START and str(one["last_sale_day"]) == day
    assert [d.key for d in due_series(state.values(), Thresholds(), one["updated_at"])] == ["S1|I1"]
    daily = table(settings, "daily_sales")
    assert sum(daily.column("units").to_pylist()) == 40 + 20 + 4
    assert sum(daily.column("event_count").to_pylist()) == one["total_events"]
    # History goes before what was streamed: an import reaching that day is refused.
    late = write_csv(tmp_path / "late.csv.gz", {("S1", "I1"): [1.0] * 11}, START - timedelta(1))
    with pytest.raises(ShelfcastError, match="only days before"):
        import_history(settings, late)
    assert SERIES_STATE.names == table(settings, "series_state").schema.names
