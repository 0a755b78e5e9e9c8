"""The forecasts the series serve now, and their live error: a cache rebuilt from Delta at
start, kept in step with the ``forecasts`` and ``drift`` tables it appends to.

The driver is the tables' only writer. An entry changes only once its rows are stored: a write
skipped (a replayed batch) or failed leaves the news to be recorded again.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts.series import parse_series_key, series_key
from streaming.drift import Points, Served, copied, drift_errors, lineage, succeeded
from streaming.schemas import DRIFT, FORECASTS
from streaming.tables import TableStore

__all__ = ["SERVED_DAYS", "ServedForecasts"]

# Forecasts generated this many days ago or later are rebuilt into the cache at start. Their
# points end a horizon (28 days by default) after their data; an older forecast has been
# scored on every day that had actuals, and its drift ratio is in series_state.
SERVED_DAYS = 60
_SERIES_VERSION = ["store_id", "item_id", "model_version"]
# served_rows' "until" of a series' newest version: it serves every day from its first.
_NEWEST = np.iinfo(np.int64).max


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
            served[key] = succeeded(
                Served(
                    version, Points(points), message.get("validation_mase"), u.get("mase_scale")
                ),
                known,
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
        days = sorted({d for k in keys for s in lineage(self.served[k]) for d in s.points})
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
            served = copied(self.served[key])  # its errors change
            store_id, item_id = parse_series_key(key)
            found = 0
            for version in lineage(served):  # oldest first: each scores the days it served
                for day, actual, yhat, error in drift_errors(
                    version, actuals[key], last_days.get(key, date.min)
                ):
                    found += 1
                    rows.append(
                        {
                            "store_id": store_id,
                            "item_id": item_id,
                            "model_version": version.model_version,
                            "day": day,
                            "actual": actual,
                            "yhat": yhat,
                            "scaled_error": error,
                            "recorded_at": now,
                            "batch_id": batch_id,
                        }
                    )
            if found:
                counts[key] = found
                scored[key] = succeeded(served, served.earlier)  # the scored days dropped
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
        whole tables (they grow with every retrain; their files' statistics skip the rest).
        Of a series' older versions only the days they served and that are not scored yet
        become Python objects (see :func:`served_rows`), not every version's every day."""
        since = datetime.now(UTC) - timedelta(days=days)
        drift = _string_ids(
            self.store.read(
                "drift",
                [*_SERIES_VERSION, "day", "scaled_error"],
                [("recorded_at", ">=", since)],  # a loaded forecast's errors are all younger
            )
        )
        forecasts = served_rows(
            self.store.read(
                "forecasts",
                [*_SERIES_VERSION, "day", "yhat", "validation_mase", "mase_scale"],
                [("generated_at", ">=", since)],
            ),
            drift,
        )
        versions: dict[tuple[str, int], Served] = {}
        points: dict[tuple[str, int], dict[date, float]] = {}
        for r in forecasts.to_pylist():  # by series, then version
            at = (series_key(r["store_id"], r["item_id"]), r["model_version"])
            if at not in versions:
                versions[at] = Served(at[1], Points(), r["validation_mase"], r["mase_scale"])
                points[at] = {}
            points[at][r["day"]] = r["yhat"]
        for at, values in points.items():
            versions[at].points = Points(values)
        # Only the kept versions' errors become Python objects: the table holds a row per
        # series and scored day, most of them of versions replaced and scored long ago.
        kept = forecasts.group_by(_SERIES_VERSION).aggregate([])
        drift = drift.join(kept, _SERIES_VERSION, join_type="left semi")
        for r in sorted(drift.to_pylist(), key=lambda r: r["day"]):
            found = versions.get((series_key(r["store_id"], r["item_id"]), r["model_version"]))
            if found is not None:
                found.add_error(r["day"], r["scaled_error"])
        for (key, _), served in versions.items():  # oldest first: each succeeds the last
            self.served[key] = succeeded(served, self.served.get(key))


def served_rows(forecasts: pa.Table, drift: pa.Table) -> pa.Table:
    """The rows of ``forecasts`` a restart keeps, sorted by series and version: every day of a
    series' newest version, and of each older one the days it served (before every newer
    version's first day) that ``drift`` has not scored yet."""
    forecasts, drift = _string_ids(forecasts), _string_ids(drift)
    firsts = (
        forecasts.group_by(_SERIES_VERSION)
        .aggregate([("day", "min")])
        .sort_by(
            [("store_id", "ascending"), ("item_id", "ascending"), ("model_version", "descending")]
        )
    )
    # Each version serves until the first day of any newer one: a running minimum over the
    # series' newer versions, kept within a series by offsetting each series below the last.
    first = pc.cast(firsts.column("day_min"), pa.int32()).to_numpy().astype(np.int64)
    same = np.zeros(len(first), bool)
    if len(first):
        same[1:] = np.asarray(
            pc.and_(
                pc.equal(firsts.column("store_id")[1:], firsts.column("store_id")[:-1]),
                pc.equal(firsts.column("item_id")[1:], firsts.column("item_id")[:-1]),
            )
        )
    series = np.cumsum(~same) - 1
    span = 1 << 32  # more than any two days apart
    newer = np.minimum.accumulate(first - series * span) + series * span
    until = np.full(len(first), _NEWEST)
    until[same] = newer[np.flatnonzero(same) - 1]
    firsts = firsts.append_column("until", pa.array(until))
    scored = drift.group_by(_SERIES_VERSION).aggregate([("day", "max")])
    rows = forecasts.join(firsts.select([*_SERIES_VERSION, "until"]), _SERIES_VERSION).join(
        scored, _SERIES_VERSION
    )
    day = pc.cast(pc.cast(rows.column("day"), pa.int32()), pa.int64())
    newest = pc.equal(rows.column("until"), _NEWEST)
    unscored = pc.or_kleene(
        pc.is_null(rows.column("day_max")),
        pc.greater(rows.column("day"), rows.column("day_max")),
    )
    keep = pc.or_(newest, pc.and_(unscored, pc.less(day, rows.column("until"))))
    return (
        rows.filter(keep)
        .drop_columns(["until", "day_max"])
        .sort_by(
            [("store_id", "ascending"), ("item_id", "ascending"), ("model_version", "ascending")]
        )
    )


def _string_ids(table: pa.Table) -> pa.Table:
    """``table`` with its store and item ids as plain strings (a read may give string_view,
    which Arrow's joins refuse)."""
    ids = ("store_id", "item_id")
    return table.cast(
        pa.schema([f.with_type(pa.string()) if f.name in ids else f for f in table.schema])
    )
