"""A series' history read from Delta equals delta-rs's own read, at every version."""

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from retrain.kernel.series import PRICE_DAYS, History, history_from_daily
from retrain.stores.history import SeriesRows, group_rows, load_group, load_history
from shelfcast.settings import Settings
from streaming.tables import TableStore
from tests.support.series import write_daily

START = date(2024, 1, 1)


def reference(uri: str, store_id: str, item_id: str, version: int) -> History:
    rows = DeltaTable(uri, version=version).to_pyarrow_table(
        columns=["item_id", "day", "units"], filters=[("store_id", "=", store_id)]
    )
    rows = rows.filter(pc.equal(rows.column("item_id").cast(pa.string()), item_id))
    return history_from_daily(rows, through=pc.max(rows.column("day")).as_py())


def test_history_at_each_version_across_commits_and_compaction(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    rng = np.random.default_rng(0)
    series = {(s, i): rng.poisson(5, 60).astype(float) for s in ("S1", "S2") for i in ("A", "B")}
    versions = [write_daily(settings, series, START)]
    for batch in range(1, 4):  # new days: a new file per partition each
        more = {key: rng.poisson(5, 10).astype(float) for key in series}
        versions.append(write_daily(settings, more, date(2024, 3, 1 + 10 * batch), batch_id=batch))
    # Late corrections: the files holding those days are rewritten.
    fix = {key: rng.poisson(1, 5).astype(float) for key in series}
    versions.append(write_daily(settings, fix, date(2024, 2, 20), batch_id=4))
    TableStore(settings.delta_dir).maintain(retention_hours=1000)  # compaction: new files
    uri = str(settings.delta_dir / "daily_sales")
    versions.append(DeltaTable(uri).version())
    assert versions[-1] > versions[-2], "compaction committed a version"
    # Newest first, then back: the worker's cached table handle moves both ways.
    for version in [versions[-1], *versions]:
        for store_id, item_id in series:
            ours = load_history(uri, store_id, item_id, version, history_days=365)
            theirs = reference(uri, store_id, item_id, version)
            assert ours.start == theirs.start
            np.testing.assert_array_equal(ours.values, theirs.values)
            # The pool is the store's total (both its items) over the series' days.
            store = [reference(uri, store_id, i, version) for i in ("A", "B")]
            assert ours.pool is not None
            for other in store:
                assert other.end == ours.end  # every item has a row on the last day here
            total = sum(other.values[-len(ours.values) :] for other in store)
            np.testing.assert_array_equal(ours.pool, total)


def rows_one_by_one(rows: pa.Table, first: date, last: date) -> list[SeriesRows]:
    """A group's series the plain way: a pandas group a series, a Python date a row."""
    frame = rows.filter(pc.greater_equal(rows.column("day"), first)).to_pandas()
    out = []
    for (store_id, item_id), part in frame.groupby(["store_id", "item_id"], sort=True):
        start = min(part["day"])
        values = np.zeros((last - start).days + 1)
        np.add.at(values, [(day - start).days for day in part["day"]], part["units"])
        recent = part[part["day"] > last - timedelta(days=PRICE_DAYS)]
        units, revenue = float(recent["units"].sum()), float(recent["revenue"].sum())
        price = revenue / units if units > 0 and revenue > 0 else None
        out.append(SeriesRows(str(store_id), str(item_id), start, values, price))
    return out


def assert_same(ours: list[SeriesRows], theirs: list[SeriesRows]) -> None:
    assert [(s.store_id, s.item_id, s.start) for s in ours] == [
        (s.store_id, s.item_id, s.start) for s in theirs
    ]
    for one, other in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(one.values, other.values)
        assert (one.price is None) == (other.price is None)
        if one.price is not None and other.price is not None:
            assert abs(one.price - other.price) < 1e-9


def test_group_rows_equal_a_series_by_series_read() -> None:
    rng = np.random.default_rng(1)
    stores: list[str] = []
    items: list[str] = []
    days: list[date] = []
    units: list[float] = []
    # "S10" sorts between "S1" and "S2"; items start late, skip days and repeat a day.
    for store_id in ("S2", "S10", "S1"):
        for item_id in ("b", "a", "c"):
            begin = int(rng.integers(0, 40))
            for k in sorted(rng.choice(np.arange(begin, 120), 60, replace=False)):
                for _ in range(2 if rng.random() < 0.05 else 1):
                    stores.append(store_id)
                    items.append(item_id)
                    days.append(START + timedelta(days=int(k)))
                    units.append(float(rng.poisson(4)))
    revenue = [None if rng.random() < 0.1 else value * 2.5 for value in units]
    table = pa.table(
        {
            "store_id": stores,
            "item_id": items,
            "day": days,
            "units": units,
            "revenue": pa.array(revenue, pa.float64()),
        }
    )
    table = table.take(rng.permutation(len(days)))  # rows in no order
    last = max(days)
    for span in (120, 90, 10):
        first = last - timedelta(days=span - 1)
        expected = rows_one_by_one(
            table.set_column(4, "revenue", pc.fill_null(table["revenue"], 0.0)), first, last
        )
        assert_same(group_rows(table, first, last), expected)
        assert any(s.price is not None for s in expected)


def test_a_group_read_from_delta_at_a_version(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    rng = np.random.default_rng(2)
    series = {(s, i): rng.poisson(5, 60).astype(float) for s in ("S1", "S2", "S3") for i in "AB"}
    first_version = write_daily(settings, series, START)
    more = {key: rng.poisson(5, 10).astype(float) for key in series if key[0] != "S3"}
    write_daily(settings, more, START + timedelta(days=60), batch_id=1)
    uri = str(settings.delta_dir / "daily_sales")
    for version, stores, days in (
        (None, None, 365),
        (None, ["S1", "S3"], 30),
        (first_version, None, 50),
    ):
        found, last = load_group(uri, stores, version, days)
        table = DeltaTable(uri, version=version).to_pyarrow_table(
            columns=["store_id", "item_id", "day", "units", "revenue"]
        )
        table = table.cast(
            pa.schema(
                [(f.name, pa.string() if f.name.endswith("_id") else f.type) for f in table.schema]
            )
        )
        if stores is not None:
            table = table.filter(pc.is_in(table["store_id"], pa.array(stores)))
        assert last == pc.max(table["day"]).as_py()
        assert_same(found, rows_one_by_one(table, last - timedelta(days=days - 1), last))
        assert {s.store_id for s in found} == set(stores or ["S1", "S2", "S3"])
