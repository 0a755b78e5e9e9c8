"""What the service's Delta tables hold (empty before a table exists)."""

from typing import Any

from deltalake import DeltaTable

from shelfcast.settings import Settings

__all__ = ["quarantined", "series_state", "stored_ids", "table_rows"]


def table_rows(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Every row of the Delta table ``name``."""
    path = str(settings.delta_dir / name)
    if not DeltaTable.is_deltatable(path):
        return []
    rows: list[dict[str, Any]] = DeltaTable(path).to_pyarrow_table().to_pylist()
    return rows


def stored_ids(settings: Settings) -> list[str]:
    """The event ids in ``pos_sales``, one per stored row."""
    path = str(settings.delta_dir / "pos_sales")
    if not DeltaTable.is_deltatable(path):
        return []
    ids: list[str] = DeltaTable(path).to_pyarrow_table(columns=["event_id"]).column(0).to_pylist()
    return ids


def series_state(settings: Settings) -> dict[str, dict[str, Any]]:
    """``series_state`` by series key."""
    return {f"{r['store_id']}|{r['item_id']}": r for r in table_rows(settings, "series_state")}


def quarantined(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """The ``quarantine`` rows of records from ``topic``."""
    return [r for r in table_rows(settings, "quarantine") if r["source_topic"] == topic]
