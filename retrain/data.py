"""The Delta edge of retraining: one series' daily history at a given table version."""

from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from retrain.errors import RetrainError
from retrain.series import History, history_from_daily

__all__ = ["load_history"]


def load_history(
    daily_sales: Path | str,
    store_id: str,
    item_id: str,
    version: int | None,
    history_days: int,
) -> History:
    """The series' last ``history_days`` days as read at ``version`` (None: the latest)."""
    try:
        table = DeltaTable(str(daily_sales), version=version)
        # Prune on the partition column; item_id is matched in Arrow (delta-rs hands strings
        # back as string_view, which its own filter cannot compare with a literal).
        rows = table.to_pyarrow_table(
            columns=["item_id", "day", "units"], filters=[("store_id", "=", store_id)]
        )
    except TableNotFoundError as exc:
        raise RetrainError(
            f"No daily_sales table at {daily_sales}; "
            "run 'shelfcast ingest' first or check --data-dir."
        ) from exc
    except DeltaError as exc:
        raise RetrainError(
            f"Cannot read daily_sales version {version} for {store_id}|{item_id}: {exc}. "
            "An old version may have been vacuumed; submit the series again at the latest one."
        ) from exc
    rows = rows.filter(pc.equal(rows.column("item_id").cast(pa.string()), item_id))
    if rows.num_rows == 0:
        raise RetrainError(
            f"Series {store_id}|{item_id} has no rows in daily_sales version {version}; "
            "check the store and item ids."
        )
    last: date = pc.max(rows.column("day")).as_py()
    first = last - timedelta(days=history_days - 1)
    rows = rows.filter(pc.greater_equal(rows.column("day"), first))
    return history_from_daily(rows, through=last)
