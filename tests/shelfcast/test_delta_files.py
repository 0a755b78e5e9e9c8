"""The console picks a read's files from the table's add actions: the same rows as delta-rs'
own dataset, whatever the store ids, item ids or statistics."""

from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from shelfcast.console.data import TableReader
from shelfcast.console.delta_files import chosen_files, table_files

# Ids a path must escape, one that is null, and items longer than the statistics' 64
# characters that differ only past them (delta-rs rounds such a max up).
STORES = ["S 1/é%#=", "plain", None]
SHORT = ["short", "é|x"]
LONG = ["a" * 100 + "z", "a" * 100 + "b"]
ITEMS = SHORT + LONG


def _rows(store: str | None, items: list[str], first: date) -> pa.Table:
    days = [first + timedelta(days=d) for d in range(3)]
    return pa.table(
        {
            "store_id": pa.array([store] * len(items) * 3, pa.string()),
            "item_id": [i for i in items for _ in days],
            "day": pa.array([d for _ in items for d in days], pa.date32()),
            "units": [float(n) for n in range(len(items) * 3)],
        }
    )


def _table(path: Path, **write: object) -> None:
    # A file per store and batch, each batch a part of the items: files to tell apart.
    for n, first in enumerate([date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)]):
        for store in STORES:
            items = [SHORT, LONG, ITEMS][n]
            write_deltalake(
                path, _rows(store, items, first), mode="append", partition_by=["store_id"], **write
            )


def _read_both(root: Path, name: str, after: date | None, **equal: str) -> tuple[list, list]:
    ours, theirs = TableReader(root), TableReader(root, pick_files=False)
    rows = [sorted(map(str, reader.rows(name, None, after, **equal))) for reader in (ours, theirs)]
    return rows[0], rows[1]


def test_the_files_chosen_read_the_rows_delta_rs_reads(tmp_path: Path) -> None:
    _table(tmp_path / "sales")
    _table(tmp_path / "unindexed", configuration={"delta.dataSkippingNumIndexedCols": "0"})
    for name in ("sales", "unindexed"):
        for store in [s for s in STORES if s is not None]:
            for item in [*ITEMS, "absent"]:
                for after in (None, date(2024, 2, 2)):
                    ours, theirs = _read_both(tmp_path, name, after, store_id=store, item_id=item)
                    assert ours == theirs, (name, store, item, after)
                    assert ours or item == "absent" or after is not None
            assert _read_both(tmp_path, name, None, store_id=store) == _read_both(
                tmp_path, name, None, store_id=store
            )
        assert len(TableReader(tmp_path).rows(name)) == 3 * 3 * (2 + 2 + 4)


def test_files_are_skipped_by_store_item_and_day(tmp_path: Path) -> None:
    _table(tmp_path / "sales")
    dt = DeltaTable(str(tmp_path / "sales"))
    files = table_files(dt)
    assert files is not None and files.actions.num_rows == 9 and files.partitioned == ["store_id"]
    assert chosen_files(files, {"store_id": "plain"}).num_rows == 3
    # "short" is in the first batch's files and the last's, not the second's; so are the long
    # items, in the second's and the last's, though their statistics are cut short.
    for item in ITEMS:
        assert chosen_files(files, {"store_id": "plain", "item_id": item}).num_rows == 2
    assert chosen_files(files, {"store_id": "plain"}, date(2024, 2, 2)).num_rows == 2
    unindexed = tmp_path / "unindexed"
    _table(unindexed, configuration={"delta.dataSkippingNumIndexedCols": "0"})
    bare = table_files(DeltaTable(str(unindexed)))
    assert bare is not None
    assert chosen_files(bare, {"store_id": "plain", "item_id": "short"}).num_rows == 3
