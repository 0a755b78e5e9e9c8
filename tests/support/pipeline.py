"""The foreachBatch pipeline fed raw Kafka records directly, without Spark."""

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from shelfcast.ingest_config import ingest_config
from shelfcast.settings import Settings
from streaming.pipeline import IngestPipeline
from streaming.query import build_pipeline

__all__ = ["NOW", "pipeline", "raw", "totals"]

NOW = datetime(2024, 3, 4, 12, tzinfo=UTC)


def raw(records: list[Any], first_offset: int = 0) -> pa.Table:
    """Kafka records as Spark's source hands them over: event dicts (as JSON, no key) or
    ``(key, value)`` pairs, on ``pos.sales`` partition 0 from ``first_offset``."""
    pairs = [(None, json.dumps(r).encode()) if isinstance(r, dict) else r for r in records]
    n = len(pairs)
    return pa.table(
        {
            "key": pa.array([k for k, _ in pairs], pa.binary()),
            "value": pa.array([v for _, v in pairs], pa.binary()),
            "topic": ["pos.sales"] * n,
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array(range(first_offset, first_offset + n), pa.int64()),
            "timestamp": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def pipeline(settings: Settings) -> IngestPipeline:
    """The service's pipeline on ``settings``, under a fixed application id."""
    built = build_pipeline(ingest_config(settings))
    built._app_id = "test-app"
    return built


def totals(settings: Settings) -> dict[str, Any]:
    """Stored events and the sums that derive from them, in each table."""
    from deltalake import DeltaTable

    daily = DeltaTable(str(settings.delta_dir / "daily_sales")).to_pyarrow_table()
    sales = DeltaTable(str(settings.delta_dir / "pos_sales")).to_pyarrow_table()
    state = DeltaTable(str(settings.delta_dir / "series_state")).to_pyarrow_table()
    return {
        "events": sorted(sales.column("event_id").to_pylist()),
        "units": sum(daily.column("units").to_pylist()),
        "event_count": sum(daily.column("event_count").to_pylist()),
        "series_events": sum(state.column("total_events").to_pylist()),
    }
