"""The forecasts the series serve now, and their live error: a cache rebuilt from Delta at
start, kept in step with the ``forecasts`` and ``drift`` tables it appends to.

The driver is the tables' only writer. An entry changes only once its rows are stored: a write
skipped (a replayed batch) or failed leaves the news to be recorded again.
"""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from contracts.series import parse_series_key, series_key
from streaming.drift import Points, Served, drift_errors
from streaming.schemas import DRIFT, FORECASTS
from streaming.tables import TableStore

__all__ = ["SERVED_DAYS", "ServedForecasts"]

# Forecasts generated this many days ago or later are rebuilt into the cache at start. Their
# points end a horizon (28 days by default) after their data; an older forecast has been
# scored on every day that had actuals, and its drift ratio is in series_state.
SERVED_DAYS = 60
_SERIES_VERSION = ["store_id", "item_id", "model_version"]


class ServedForecasts:
    """The served forecast of each series (``"store|item"`` -> :class:`Served`)."""

    def __init__(self, store: TableStore, days: int = SERVED_DAYS) -> None:
        self.store = store
        self.served: dict[str, Served] = {}
        self._load(days)

    def drift_ratio(self, key: str) -> float | None:
        served = self.served.get(key)
        return None if served is None else served.drift_ratio

    def record_forecasts(
        self, updates: list[dict[str, Any]], app: str, batch_id: int
    ) -> tuple[int, bool]:
        """Store the forecasts of finished retrains; (series published, whether stored).

        The served cache changes only once the rows are stored: a skipped write (a replayed
        batch) or a failed one leaves them to be recorded again."""
        rows: list[dict[str, Any]] = []
        served: dict[str, Served] = {}
        for u in updates:
            message = u.get("forecast")
            if u["status"] != "done" or not message:
                continue
            key = series_key(u["store_id"], u["item_id"])
            version = int(message["model_version"])
            known = served.get(key) or self.served.get(key)
            if known is not None and known.model_version >= version:
                continue  # already recorded (a re-read after a crash)
            points = {date.fromisoformat(p["date"]): float(p["yhat"]) for p in message["points"]}
            served[key] = Served(
                version, Points(points), message.get("validation_mase"), u.get("mase_scale")
            )
            for p in message["points"]:
                rows.append(
                    {
                        "store_id": u["store_id"],
                        "item_id": u["item_id"],
                        "model_version": version,
                        "day": date.fromisoformat(p["date"]),
                        "yhat": p["yhat"],
                        "yhat_lower": p["yhat_lower"],
                        "yhat_upper": p["yhat_upper"],
                        "data_through": date.fromisoformat(message["data_through"]),
                        "method": message["method"],
                        "validation_mase": message.get("validation_mase"),
                        "mase_scale": u.get("mase_scale"),
                        "generated_at": datetime.fromisoformat(message["generated_at"]),
                    }
                )
        if not rows:
            return 0, True
        table = pa.Table.from_pylist(rows, schema=FORECASTS)
        if not self.store.append_once("forecasts", table, app, batch_id):
            return 0, False
        self.served.update(served)
        return len(served), True

    def record_drift(
        self,
        changed: tuple[tuple[str, str], ...],
        last_days: dict[str, date],
        app: str,
        batch_id: int,
        now: datetime,
    ) -> tuple[dict[str, int], bool]:
        """Store the live errors of new complete days; (days per series, whether stored).

        Scored on copies of the served entries, which replace them once the rows are stored."""
        keys = [k for k in (series_key(s, i) for s, i in changed) if k in self.served]
        if not keys:
            return {}, True
        days = sorted({d for k in keys for d in self.served[k].points})
        actuals: dict[str, dict[date, float]] = {k: {} for k in keys}
        daily = self.store.read(
            "daily_sales", ["store_id", "item_id", "day", "units"], [("day", "in", days)]
        )
        for r in daily.to_pylist():
            found_for = actuals.get(series_key(r["store_id"], r["item_id"]))
            if found_for is not None:
                found_for[r["day"]] = r["units"]
        rows, counts, scored = [], {}, {}
        for key in keys:
            served = replace(self.served[key])  # a copy: its errors change
            found = drift_errors(served, actuals[key], last_days.get(key, date.min))
            store_id, item_id = parse_series_key(key)
            for day, actual, yhat, error in found:
                rows.append(
                    {
                        "store_id": store_id,
                        "item_id": item_id,
                        "model_version": served.model_version,
                        "day": day,
                        "actual": actual,
                        "yhat": yhat,
                        "scaled_error": error,
                        "recorded_at": now,
                        "batch_id": batch_id,
                    }
                )
            if found:
                counts[key] = len(found)
                scored[key] = served
        if not rows:
            return {}, True
        table = pa.Table.from_pylist(rows, schema=DRIFT)
        if not self.store.append_once("drift", table, app, batch_id):
            return {}, False
        self.served.update(scored)
        return counts, True

    def _load(self, days: int) -> None:
        """Rebuild the cache of served forecasts and their live errors from Delta: only the
        forecasts generated in the last ``days`` days and the errors recorded since, never the
        whole tables (they grow with every retrain; their files' statistics skip the rest)."""
        since = datetime.now(UTC) - timedelta(days=days)
        forecasts = self.store.read(
            "forecasts",
            [*_SERIES_VERSION, "day", "yhat", "validation_mase", "mase_scale"],
            [("generated_at", ">=", since)],
        )
        points: dict[str, dict[date, float]] = {}
        for r in forecasts.to_pylist():
            key = series_key(r["store_id"], r["item_id"])
            served = self.served.get(key)
            if served is None or served.model_version < r["model_version"]:
                served = Served(r["model_version"], Points(), r["validation_mase"], r["mase_scale"])
                self.served[key] = served
                points[key] = {}
            if served.model_version == r["model_version"]:
                points[key][r["day"]] = r["yhat"]
        for key, values in points.items():
            self.served[key].points = Points(values)
        drift = self.store.read(
            "drift",
            [*_SERIES_VERSION, "day", "scaled_error"],
            [("recorded_at", ">=", since)],  # a loaded forecast's errors are all younger
        )
        for r in sorted(drift.to_pylist(), key=lambda r: r["day"]):
            served = self.served.get(series_key(r["store_id"], r["item_id"]))
            if served is not None and served.model_version == r["model_version"]:
                served.add_error(r["day"], r["scaled_error"])
