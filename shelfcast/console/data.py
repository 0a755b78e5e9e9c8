"""What the console shows, read from the service's Delta tables (read-only) as plain data.

``TableReader`` is the I/O edge (delta-rs); the functions below it shape rows into what a page
or the JSON API returns and take no I/O of their own.
"""

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from contracts.series import series_key
from shelfcast.forecast_chart import ChartData

__all__ = [
    "SERIES_COLUMNS",
    "TableReader",
    "chart_data",
    "events_per_second",
    "model_history",
    "quarantine_summary",
    "series_table",
    "waves_view",
]

HISTORY_DAYS = 120  # actuals shown before the forecast


class TableReader:
    """Reads the Delta tables under ``delta_dir``; a table not there yet reads as no rows."""

    def __init__(self, delta_dir: Path) -> None:
        self.delta_dir = delta_dir

    def rows(
        self, name: str, columns: Sequence[str] | None = None, **equal: str
    ) -> list[dict[str, Any]]:
        """Rows of table ``name`` (only ``columns`` when given) whose ``equal`` columns match."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            table = DeltaTable(str(self.delta_dir / name))
        except TableNotFoundError:
            return []
        present = {f.name for f in table.schema().fields}
        wanted = None if columns is None else [c for c in columns if c in present]
        condition = None
        for column, value in equal.items():
            # Cast: delta-rs reads strings as string_view, which has no comparison kernel.
            test = ds.field(column).cast(pa.string()) == value
            condition = test if condition is None else condition & test
        rows: list[dict[str, Any]] = (
            table.to_pyarrow_dataset().to_table(columns=wanted, filter=condition).to_pylist()
        )
        return rows

    def series(self, store_id: str, item_id: str, name: str) -> list[dict[str, Any]]:
        """The rows of one series in ``name`` (a table keyed by store_id and item_id)."""
        return self.rows(name, store_id=store_id, item_id=item_id)


# The series table's columns (what the console reads of ``series_state``).
SERIES_COLUMNS = (
    "store_id",
    "item_id",
    "status",
    "family",
    "model_version",
    "last_retrain_at",
    "validation_mase",
    "drift_ratio",
    "total_events",
    "last_sale_day",
    "last_error",
)


def series_table(
    rows: list[dict[str, Any]], query: str = "", limit: int = 100, offset: int = 0
) -> dict[str, Any]:
    """``series_state`` rows whose key, state or family contains ``query`` (any case), by key."""
    needle = query.strip().lower()
    shown = []
    for row in rows:
        key = series_key(row["store_id"], row["item_id"])
        state = row.get("status") or "new"
        if needle and not any(
            needle in str(v).lower() for v in (key, state, row.get("family") or "")
        ):
            continue
        shown.append(
            {
                "key": key,
                "state": state,
                **{k: row.get(k) for k in SERIES_COLUMNS[3:]},
            }
        )
    shown.sort(key=lambda r: str(r["key"]))
    return {"total": len(shown), "query": query, "rows": shown[offset : offset + limit]}


def model_history(
    forecast_rows: list[dict[str, Any]], drift_rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One entry per served model version, newest first, with its live error on new actuals."""
    versions: dict[int, dict[str, Any]] = {}
    for row in forecast_rows:
        entry = versions.setdefault(
            int(row["model_version"]),
            {
                "model_version": int(row["model_version"]),
                "generated_at": row["generated_at"],
                "method": row["method"],
                "data_through": row["data_through"],
                "validation_mase": row["validation_mase"],
                "horizon": 0,
            },
        )
        entry["horizon"] += 1
    live: dict[int, list[float]] = {}
    for row in drift_rows:
        live.setdefault(int(row["model_version"]), []).append(float(row["scaled_error"]))
    for version, entry in versions.items():
        errors = live.get(version, [])
        entry["live_days"] = len(errors)
        entry["live_scaled_error"] = sum(errors) / len(errors) if errors else None
    return sorted(versions.values(), key=lambda e: -e["model_version"])


def chart_data(
    key: str,
    forecast_rows: list[dict[str, Any]],
    daily_rows: list[dict[str, Any]],
    family: str | None,
    history_days: int = HISTORY_DAYS,
) -> ChartData | None:
    """The newest served forecast of the series with its recent actuals; None without one."""
    if not forecast_rows:
        return None
    newest = max(int(r["model_version"]) for r in forecast_rows)
    points = sorted(
        (r["day"], r["yhat"], r["yhat_lower"], r["yhat_upper"])
        for r in forecast_rows
        if int(r["model_version"]) == newest
    )
    first = next(r for r in forecast_rows if int(r["model_version"]) == newest)
    through: date = first["data_through"]
    start = through - timedelta(days=history_days)
    history = sorted((r["day"], r["units"]) for r in daily_rows if r["day"] > start)
    return ChartData(
        key=key,
        model_version=newest,
        method=first["method"],
        family=family,
        data_through=through,
        points=points,
        history=history,
    )


def quarantine_summary(rows: list[dict[str, Any]], recent: int = 20) -> dict[str, Any]:
    """Quarantined records: how many, by reason (most first), and the latest few."""
    reasons = Counter(str(r["reason"]) for r in rows)
    latest = sorted(rows, key=lambda r: r["quarantined_at"], reverse=True)[:recent]
    return {
        "total": len(rows),
        "reasons": [{"reason": k, "count": n} for k, n in reasons.most_common(20)],
        "recent": [
            {
                "at": r["quarantined_at"],
                "partition": r["source_partition"],
                "offset": r["source_offset"],
                "reason": r["reason"],
            }
            for r in latest
        ],
    }


def events_per_second(batches: list[dict[str, Any]], now: datetime, window: float = 60.0) -> float:
    """Events stored per second over the last ``window`` seconds (batch ``at``: ISO times)."""
    since = now - timedelta(seconds=window)
    stored = sum(
        int(b.get("stored", 0)) for b in batches if datetime.fromisoformat(b["at"]) > since
    )
    return stored / window


def waves_view(waves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The coordinator's recent waves, newest first, with start time and duration."""
    shown = []
    for wave in sorted(waves, key=lambda w: -float(w["started_at"])):
        finished = wave.get("finished_at")
        shown.append(
            {
                **wave,
                "started": datetime.fromtimestamp(float(wave["started_at"]), UTC).isoformat()[:19],
                "seconds": None if finished is None else finished - wave["started_at"],
            }
        )
    return shown
