"""Pure aggregation of new events: per-day increments and the per-series change ledger."""

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from contracts.series import series_key
from streaming.schemas import DAILY_SALES, SERIES_STATE

__all__ = ["blank_state", "daily_increments", "mark_plans_changed", "update_series_state"]


def daily_increments(events: pa.Table, batch_id: int) -> pa.Table:
    """Per (store_id, item_id, day): net units, revenue, units returned, event count."""
    if events.num_rows == 0:
        return DAILY_SALES.empty_table()
    quantity = events.column("quantity")
    price = pc.fill_null(events.column("unit_price"), 0.0)
    work = pa.table(
        {
            "store_id": events.column("store_id"),
            "item_id": events.column("item_id"),
            "day": events.column("sale_date"),
            "units": quantity,
            "revenue": pc.multiply(quantity, price),
            "returns": pc.if_else(pc.less(quantity, 0), pc.negate(quantity), 0.0),
        }
    )
    grouped = work.group_by(["store_id", "item_id", "day"]).aggregate(
        [("units", "sum"), ("revenue", "sum"), ("returns", "sum"), ("units", "count")]
    )
    return pa.table(
        {
            "store_id": grouped.column("store_id"),
            "item_id": grouped.column("item_id"),
            "day": grouped.column("day"),
            "units": grouped.column("units_sum"),
            "revenue": grouped.column("revenue_sum"),
            "returns": grouped.column("returns_sum"),
            "event_count": grouped.column("units_count").cast(pa.int64()),
            "updated_batch_id": pa.repeat(pa.scalar(batch_id, pa.int64()), grouped.num_rows),
        },
        schema=DAILY_SALES,
    ).sort_by([("store_id", "ascending"), ("item_id", "ascending"), ("day", "ascending")])


def update_series_state(
    current: pa.Table, events: pa.Table, batch_id: int, now: datetime
) -> pa.Table:
    """New ``series_state`` rows for every series with events in ``events``.

    ``current`` holds the existing rows of (at least) those series. Counters since the last
    retrain grow; the distinct pending days are a set union, so a day counts once.
    """
    if events.num_rows == 0:
        return SERIES_STATE.empty_table()
    grouped = (
        pa.table(
            {
                "store_id": events.column("store_id"),
                "item_id": events.column("item_id"),
                "sale_date": events.column("sale_date"),
                "sold_at": events.column("sold_at"),
                "kafka_timestamp": events.column("kafka_timestamp"),
            }
        )
        .group_by(["store_id", "item_id"])
        .aggregate(
            [
                ("sale_date", "count"),
                ("sale_date", "distinct"),
                ("sold_at", "max"),
                ("kafka_timestamp", "max"),
            ]
        )
    )
    before: dict[tuple[str, str], dict[str, Any]] = {
        (row["store_id"], row["item_id"]): row for row in current.to_pylist()
    }
    rows = []
    for new in grouped.to_pylist():
        key = (new["store_id"], new["item_id"])
        old = before.get(key) or blank_state(*key)
        days: set[date] = set(old["pending_days"] or []) | set(new["sale_date_distinct"])
        batch_days = new["sale_date_distinct"]
        rows.append(
            {
                **old,
                "total_events": old["total_events"] + new["sale_date_count"],
                "events_since_retrain": old["events_since_retrain"] + new["sale_date_count"],
                "days_since_retrain": len(days),
                "pending_days": sorted(days),
                "first_sale_day": min(d for d in [old["first_sale_day"], *batch_days] if d),
                "last_sale_day": max(d for d in [old["last_sale_day"], *batch_days] if d),
                "last_sold_at": _latest(old["last_sold_at"], new["sold_at_max"]),
                "last_event_at": _latest(old["last_event_at"], new["kafka_timestamp_max"]),
                "updated_batch_id": batch_id,
                "updated_at": now,
            }
        )
    return pa.Table.from_pylist(rows, schema=SERIES_STATE)


def mark_plans_changed(
    updated: pa.Table,
    current: Mapping[str, dict[str, Any]],
    touched: Iterable[tuple[str, str]],
    batch_id: int,
    now: datetime,
) -> pa.Table:
    """``updated`` (this batch's new ``series_state`` rows), with the ``touched`` series
    marked: their plans changed now, one more change not yet handed over. A touched series
    without a row in ``updated`` starts from its row in ``current`` (``"store|item"`` ->
    row); one in neither is skipped (a plan alone never creates a series)."""
    rows = {(r["store_id"], r["item_id"]): r for r in updated.to_pylist()}
    for store_id, item_id in touched:
        row = rows.get((store_id, item_id)) or current.get(series_key(store_id, item_id))
        if row is None:
            continue
        rows[(store_id, item_id)] = {
            **row,
            "plans_changed_at": now,
            "plan_changes_since_retrain": (row.get("plan_changes_since_retrain") or 0) + 1,
            "updated_batch_id": batch_id,
            "updated_at": now,
        }
    return pa.Table.from_pylist([rows[k] for k in sorted(rows)], schema=SERIES_STATE)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    present = [t for t in (a, b) if t is not None]
    return max(present) if present else None


def blank_state(store_id: str, item_id: str) -> dict[str, Any]:
    """A ``series_state`` row of a series with nothing since its last retrain."""
    row: dict[str, Any] = dict.fromkeys(SERIES_STATE.names)
    row.update(
        store_id=store_id,
        item_id=item_id,
        total_events=0,
        events_since_retrain=0,
        days_since_retrain=0,
        pending_days=[],
        plan_changes_since_retrain=0,
    )
    return row
