"""The Delta edge of retraining: one series' daily history at a given table version.

Measured here on a table with one commit per micro-batch: ``to_pyarrow_table`` costs ~5 ms
per data file (283 ms at 56 commits), and opening the table replays its log (21 ms). So each
worker keeps one handle per table and moves it to the wanted version (incremental going
forward), lists the store partition's files from the log, and reads them with pyarrow in one
dataset scan (~45 ms at 56 commits, ~6x less). Tables whose readers need more than the
plain protocol (deletion vectors, column mapping: delta-spark may add them) or whose files
are not local go through delta-rs's reader.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from retrain.errors import InfrastructureError, RetrainError
from retrain.kernel.series import PRICE_DAYS, History, history_from_daily
from retrain.stores.transient import transient

__all__ = [
    "SeriesRows",
    "group_rows",
    "load_group",
    "load_history",
    "read_store",
    "series_history",
    "store_ids",
]

_COLUMNS = ["item_id", "day", "units", "revenue"]
_GROUP_COLUMNS = ["store_id", "item_id", "day", "units", "revenue"]


@dataclass(frozen=True)
class SeriesRows:
    """One series' daily units from ``start`` (days without a row: zero)."""

    store_id: str
    item_id: str
    start: date
    values: np.ndarray
    price: float | None = None  # its recent unit price (revenue / units)


@cache
def _handle(uri: str) -> DeltaTable:
    """One handle per table and worker process (tasks in a worker run one at a time)."""
    return DeltaTable(uri)


def _store_rows(uri: str, store_id: str, version: int | None) -> pa.Table:
    table = _handle(uri)
    if version is None:
        table.update_incremental()
    elif table.version() != version:
        table.load_as_version(version)
    pruning = [("store_id", "=", store_id)]
    if table.protocol().min_reader_version > 1 or "://" in uri:
        # Prune on the partition column; item_id is matched in Arrow (delta-rs hands strings
        # back as string_view, which its own filter cannot compare with a literal).
        rows: pa.Table = table.to_pyarrow_table(columns=_COLUMNS, filters=pruning)
        return rows
    files = table.file_uris(file_pruning_predicate=pruning)
    if not files:
        return pa.table({name: pa.array([], pa.string()) for name in _COLUMNS})
    rows = pads.dataset(files, format="parquet").to_table(columns=_COLUMNS)
    # delta-rs writes Arrow's string_view type into the files' metadata; take() lacks it.
    return rows.set_column(0, "item_id", rows.column("item_id").cast(pa.string()))


def read_store(daily_sales: Path | str, store_id: str, version: int | None) -> pa.Table:
    """Every row of the store's partition as read at ``version`` (None: the latest)."""
    try:
        return _store_rows(str(daily_sales), store_id, version)
    except TableNotFoundError as exc:
        raise RetrainError(
            f"No daily_sales table at {daily_sales}; "
            "run 'shelfcast ingest' first or check --data-dir."
        ) from exc
    except (DeltaError, OSError, pa.ArrowException) as exc:
        if transient(exc):
            raise InfrastructureError(
                f"Cannot read daily_sales version {version} for store {store_id}: {exc}. "
                "Its storage did not answer; the series is retried until it does.",
                "Delta",
            ) from exc
        raise RetrainError(
            f"Cannot read daily_sales version {version} for store {store_id}: {exc}. "
            "An old version may have been vacuumed; submit the series again at the latest one."
        ) from exc


def series_history(
    store: pa.Table, store_id: str, item_id: str, version: int | None, history_days: int
) -> History:
    """The series' last ``history_days`` days from its store's rows (:func:`read_store`), with
    the store's daily total over the same days."""
    rows = store.filter(pc.equal(store.column("item_id").cast(pa.string()), item_id))
    if rows.num_rows == 0:
        raise RetrainError(
            f"Series {store_id}|{item_id} has no rows in daily_sales version {version}; "
            "check the store and item ids."
        )
    last: date = pc.max(rows.column("day")).as_py()
    first = last - timedelta(days=history_days - 1)
    rows = rows.filter(pc.greater_equal(rows.column("day"), first))
    return history_from_daily(rows, through=last, pool=store)


def load_history(
    daily_sales: Path | str,
    store_id: str,
    item_id: str,
    version: int | None,
    history_days: int,
) -> History:
    """The series' last ``history_days`` days as read at ``version`` (None: the latest), with
    its store's daily total over the same days (the rows are read for the store anyway)."""
    rows = read_store(daily_sales, store_id, version)
    return series_history(rows, store_id, item_id, version, history_days)


def _at(uri: str, version: int | None) -> DeltaTable:
    table = _handle(uri)
    if version is None:
        table.update_incremental()
    elif table.version() != version:
        table.load_as_version(version)
    return table


def store_ids(daily_sales: Path | str, version: int | None = None) -> list[str]:
    """Every store with rows in ``daily_sales`` (its partitions, from the log: no data read)."""
    try:
        table = _at(str(daily_sales), version)
        return sorted({str(p["store_id"]) for p in table.partitions()})
    except TableNotFoundError:
        return []
    except (DeltaError, OSError) as exc:
        raise RetrainError(f"Cannot list the stores of {daily_sales}: {exc}") from exc


def load_group(
    daily_sales: Path | str,
    stores: Collection[str] | None,
    version: int | None,
    history_days: int,
) -> tuple[list[SeriesRows], date]:
    """Every series of ``stores`` (None: all) as read at ``version``: its last
    ``history_days`` days through the newest day of the read, which is returned too."""
    uri = str(daily_sales)
    try:
        table = _at(uri, version)
        pruning = None if stores is None else [("store_id", "in", sorted(stores))]
        rows: pa.Table = table.to_pyarrow_table(columns=_GROUP_COLUMNS, filters=pruning)
    except TableNotFoundError as exc:
        raise RetrainError(
            f"No daily_sales table at {daily_sales}; run 'shelfcast ingest' first."
        ) from exc
    except (DeltaError, OSError, pa.ArrowException) as exc:
        raise RetrainError(
            f"Cannot read daily_sales version {version} for a group model: {exc}. "
            "An old version may have been vacuumed; the group is retried at the latest one."
        ) from exc
    if rows.num_rows == 0:
        raise RetrainError("The group has no daily sales yet; nothing to learn from.")
    last: date = pc.max(rows.column("day")).as_py()
    return group_rows(rows, last - timedelta(days=history_days - 1), last), last


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Each row's index into the column's distinct values, sorted (so codes sort as the
    strings do), and those values."""
    strings = column.cast(pa.string())  # delta-rs may hand back string_view
    names = pc.unique(strings)
    names = names.take(pc.array_sort_indices(names))
    return pc.index_in(strings, value_set=names).to_numpy(), names.to_pylist()


def group_rows(rows: pa.Table, first: date, last: date) -> list[SeriesRows]:
    """Each series of ``rows`` (``store_id``, ``item_id``, ``day``, ``units``, ``revenue``)
    from its first day on or after ``first`` through ``last``, sorted by store and item.

    Arrow and numpy throughout: two years of 100,000 series are 70 million rows, which as
    pandas objects (a Python date and two strings a row) held ~14 GB of a worker's memory.
    """
    epoch = date(1970, 1, 1)
    day = pc.cast(rows.column("day"), pa.int32()).to_numpy()  # days since 1970-01-01
    keep = day >= (first - epoch).days
    stores, store_names = _codes(rows.column("store_id"))
    items, item_names = _codes(rows.column("item_id"))
    code = stores.astype(np.int64) * len(item_names) + items
    # The rows come a store's files at a time, so a stable sort has little to move.
    order = np.flatnonzero(keep)
    order = order[np.argsort(code[order], kind="stable")]
    code, day = code[order], day[order]
    units = pc.fill_null(rows.column("units"), 0.0).to_numpy()[order]
    revenue = pc.fill_null(rows.column("revenue"), 0.0).to_numpy()[order]
    if not len(code):
        return []
    begins = np.r_[0, np.flatnonzero(np.diff(code)) + 1]
    ends = np.r_[begins[1:], len(code)]
    starts = np.minimum.reduceat(day, begins)
    recent = day > (last - epoch).days - PRICE_DAYS
    recent_units = np.add.reduceat(np.where(recent, units, 0.0), begins)
    recent_revenue = np.add.reduceat(np.where(recent, revenue, 0.0), begins)
    end = (last - epoch).days
    out = []
    for group, (begin, stop) in enumerate(zip(begins, ends, strict=True)):
        start = int(starts[group])
        values = np.bincount(
            day[begin:stop] - start, weights=units[begin:stop], minlength=end - start + 1
        )
        sold, paid = float(recent_units[group]), float(recent_revenue[group])
        store, item = divmod(int(code[begin]), len(item_names))
        out.append(
            SeriesRows(
                store_names[store],
                item_names[item],
                epoch + timedelta(days=start),
                values,
                paid / sold if sold > 0 and paid > 0 else None,
            )
        )
    return out
