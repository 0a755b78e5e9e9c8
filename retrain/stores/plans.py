"""The Delta edge of plans: the ``plans`` and ``stores`` tables the stream keeps, as
:mod:`retrain.kernel.plans` records.

Both tables hold current state (one row per plan id and per store, at its highest revision),
so reading them is a filter, not a fold over revisions. A table the stream has not created
yet reads as empty: a service without plans forecasts as before.
"""

from collections.abc import Collection
from datetime import date
from functools import cache
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from retrain.errors import InfrastructureError, RetrainError
from retrain.kernel.plans import Plan, StoreInfo
from retrain.stores.transient import transient

__all__ = ["load_plans", "load_stores"]


@cache
def _handle(uri: str) -> DeltaTable | None:
    try:
        return DeltaTable(uri)
    except TableNotFoundError:
        return None


def _read(uri: str, filters: list[tuple[str, str, list[str]]] | None) -> pa.Table | None:
    table = _handle(uri)
    if table is None:
        _handle.cache_clear()  # created later: look again next time
        return None
    try:
        table.update_incremental()
        rows: pa.Table = table.to_pyarrow_table(filters=filters)
    except (DeltaError, OSError, pa.ArrowException) as exc:
        if transient(exc):
            raise InfrastructureError(
                f"Cannot read {uri}: {exc}. Its storage did not answer; retried until it does.",
                "Delta",
            ) from exc
        raise RetrainError(f"Cannot read {uri}: {exc}. Check the data directory.") from exc
    return rows


def load_plans(plans: Path | str, stores: Collection[str] | None) -> dict[str, list[Plan]]:
    """The live (not cancelled) plans of ``stores`` (None: every store), by store."""
    filters = None if stores is None else [("store_id", "in", sorted(stores))]
    rows = _read(str(plans), filters)
    out: dict[str, list[Plan]] = {}
    if rows is None:
        return out
    for row in rows.to_pylist():
        if row["cancelled"]:
            continue
        start: date = row["start_date"]
        end: date = row["end_date"]
        out.setdefault(str(row["store_id"]), []).append(
            Plan(
                str(row["kind"]),
                start,
                end,
                str(row["item_id"]),
                row.get("depth"),
                row.get("unit_price"),
                str(row["plan_id"]),
            )
        )
    return out


def load_stores(stores: Path | str) -> dict[str, StoreInfo]:
    """Every store's master data, by store id."""
    rows = _read(str(stores), None)
    if rows is None:
        return {}
    return {
        str(row["store_id"]): StoreInfo(
            str(row["store_id"]),
            row.get("country"),
            row.get("subdivision"),
            tuple(int(d) for d in row["open_weekdays"]) if row.get("open_weekdays") else None,
            row.get("store_type"),
            row.get("assortment"),
        )
        for row in rows.to_pylist()
    }
