"""What the console shows, read from the service's Delta tables (read-only) as plain data.

``TableReader`` (delta-rs) and ``LagReader`` (one Kafka consumer) are the I/O edges;
``ConsoleData`` builds each page's and API answer's payload from them; the functions below
shape rows and take no I/O of their own. Every read is bounded: the series table is read in
Arrow (sorted by key once per read, cached) and only the page shown becomes Python rows; a
series page reads that series' rows from its store's files.
"""

import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.series import parse_series_key, series_key
from shelfcast.console.delta_files import TableFiles, chosen_files, files_dataset, table_files
from shelfcast.errors import ShelfcastError
from shelfcast.forecast_chart import ChartData, figure_spec
from shelfcast.settings import Settings
from shelfcast.status import coordinator_status, count_series, ingest_lag
from streaming.thresholds import ThresholdStore
from streaming.trigger import Thresholds

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

__all__ = [
    "FORECAST_COLUMNS",
    "SERIES_COLUMNS",
    "ConsoleData",
    "LagReader",
    "TableReader",
    "chart_data",
    "events_per_second",
    "model_history",
    "newest_through",
    "next_plan",
    "quarantine_summary",
    "series_index",
    "series_plans",
    "series_table",
    "waves_view",
]

HISTORY_DAYS = 120  # actuals shown before the forecast


class TableReader:
    """Reads the Delta tables under ``delta_dir``; a table not there yet reads as no rows.

    Filters choose the files before any is opened, by partition value (``forecasts``,
    ``drift``, ``daily_sales`` and ``plans`` are partitioned by store) and by the min/max
    statistics in the log (``delta_files``), so a series' rows cost its store's files. Each
    thread keeps a handle per table, brought up to date at most every ``fresh`` seconds by
    reading only the new commits (opening afresh replays the log: ~20 ms a table), and the
    table's file list at that version.
    """

    def __init__(self, delta_dir: Path, fresh: float = 1.0, pick_files: bool = True) -> None:
        self.delta_dir = delta_dir
        self.fresh = fresh
        self.pick_files = pick_files  # False: delta-rs' own dataset (bench.console's baseline)
        self._local = threading.local()  # delta-rs handles are not for sharing across threads

    def _handle(self, name: str) -> "DeltaTable | None":
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        handles: dict[str, tuple[DeltaTable, float]] = self._local.__dict__.setdefault(
            "handles", {}
        )
        now = time.monotonic()
        kept = handles.get(name)
        if kept is not None:
            dt, at = kept
            if now - at < self.fresh:
                return dt
            try:
                dt.update_incremental()
                handles[name] = (dt, now)
                return dt
            except DeltaError:  # its log moved on past what it can follow: open afresh
                del handles[name]
        try:
            dt = DeltaTable(str(self.delta_dir / name))
        except TableNotFoundError:
            return None
        handles[name] = (dt, now)
        return dt

    def _files(self, name: str, dt: "DeltaTable") -> TableFiles | None:
        """The files of ``dt`` (table ``name``) at its version, kept until it moves."""
        kept: dict[str, tuple[int, TableFiles | None]] = self._local.__dict__.setdefault(
            "files", {}
        )
        version = dt.version()
        if name not in kept or kept[name][0] != version:
            kept[name] = (version, table_files(dt))
        return kept[name][1]

    def table(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        after: date | None = None,
        **equal: str,
    ) -> "pa.Table | None":
        """Rows of table ``name`` (only ``columns`` when given) whose ``equal`` columns match
        and, with ``after``, whose ``day`` is later, as Arrow; None when the table does not
        exist yet."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs

        from streaming.schemas import APPEND_ONLY  # pyarrow's: imported with it, when read

        dt = self._handle(name)
        if dt is None:
            return None
        # A local table is read through Arrow's own file system, not delta-rs' (Python).
        local = pafs.SubTreeFileSystem(str(self.delta_dir / name), pafs.LocalFileSystem())
        files = self._files(name, dt) if self.pick_files else None
        if files is None:
            dataset = dt.to_pyarrow_dataset(
                file_pruning_predicate=_pruning(equal), filesystem=local
            )
        else:
            dataset = files_dataset(files, chosen_files(files, equal, after), local)
        present = set(dataset.schema.names)
        wanted = (
            list(dataset.schema.names) if columns is None else [c for c in columns if c in present]
        )

        def rows(cast: bool) -> "ds.Expression | None":
            found = None
            for column, value in equal.items():
                field = ds.field(column).cast(pa.string()) if cast else ds.field(column)
                found = field == value if found is None else found & (field == value)
            if after is not None:
                later = ds.field("day") > pa.scalar(after, pa.date32())
                found = later if found is None else found & later
            return found

        # Files written by a merge hold string_view, which has no comparison kernel with a
        # string: their rows are compared cast to string. Tables only ever appended to (and
        # compacted) hold string, and comparing without the cast halves a series page's
        # read of its store's forecasts (19 against 35 ms at 840,000 rows a store).
        if name in APPEND_ONLY:
            try:
                return dataset.to_table(columns=wanted, filter=rows(cast=False))
            except pa.ArrowNotImplementedError:
                pass  # a file of another writer after all: compared as string below
        return dataset.to_table(columns=wanted, filter=rows(cast=True))

    def rows(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        after: date | None = None,
        **equal: str,
    ) -> list[dict[str, Any]]:
        """``table`` as a list of rows (no rows when the table does not exist yet)."""
        table = self.table(name, columns, after, **equal)
        return [] if table is None else table.to_pylist()

    def files(self, name: str, **equal: str) -> tuple[int, int]:
        """(files a read with ``equal`` opens, files in the table): what the filters skip."""
        dt = self._handle(name)
        if dt is None:
            return 0, 0
        return len(dt.file_uris(file_pruning_predicate=_pruning(equal))), len(dt.file_uris())

    def series(
        self,
        store_id: str,
        item_id: str,
        name: str,
        columns: Sequence[str] | None = None,
        after: date | None = None,
    ) -> list[dict[str, Any]]:
        """The rows of one series in ``name`` (a table keyed by store_id and item_id)."""
        return self.rows(name, columns, after, store_id=store_id, item_id=item_id)

    def history(
        self, store_id: str, item_id: str, through: date, days: int
    ) -> list[dict[str, Any]]:
        """A series' ``daily_sales`` (day and units) after ``through - days``: a chart's
        actuals, not the store's whole history decoded."""
        since = through - timedelta(days=days)
        return self.series(store_id, item_id, "daily_sales", ("day", "units"), since)


def _pruning(equal: dict[str, str]) -> list[tuple[str, str, str]] | None:
    """delta-rs' file filter for columns equal to values (None: every file)."""
    return [(column, "=", value) for column, value in equal.items()] or None


# What a series page reads of ``forecasts`` (chart_data and model_history).
FORECAST_COLUMNS = (
    "model_version",
    "day",
    "yhat",
    "yhat_lower",
    "yhat_upper",
    "data_through",
    "method",
    "validation_mase",
    "generated_at",
)

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


def series_index(table: "pa.Table | None") -> "pa.Table | None":
    """``series_state`` with each row's key, state and family as text (``_key``, ``_state``,
    ``_family``), sorted by key: made once per read of the table (cached), so a search
    filters and slices it instead of sorting 100,000 keys per query."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table is None or table.num_rows == 0:
        return table
    keys = pc.binary_join_element_wise(
        table.column("store_id").cast(pa.string()), table.column("item_id").cast(pa.string()), "|"
    )
    states = pc.fill_null(table.column("status").cast(pa.string()), "new")
    families = (
        pc.fill_null(table.column("family").cast(pa.string()), "")
        if "family" in table.column_names
        else pa.nulls(table.num_rows, pa.string()).fill_null("")
    )
    indexed = (
        table.append_column("_key", keys)
        .append_column("_state", states)
        .append_column("_family", families)
    )
    return indexed.take(pc.sort_indices(keys))


def series_table(
    index: "pa.Table | None",
    query: str = "",
    limit: int = 100,
    offset: int = 0,
    plans: "Callable[[list[str]], dict[str, list[dict[str, Any]]]] | None" = None,
) -> dict[str, Any]:
    """The rows of ``index`` (:func:`series_index`) whose key, state or family contains
    ``query`` (any case), by key, ``limit`` of them from ``offset``; only the page shown
    becomes Python rows. ``plans(stores)`` reads those stores' plans: each row shows its
    series' next plan."""
    import pyarrow.compute as pc

    if index is None or index.num_rows == 0:
        return {"total": 0, "query": query, "rows": []}
    needle = query.strip()
    if needle:
        keep = pc.or_(
            pc.or_(
                pc.match_substring(index.column("_key"), needle, ignore_case=True),
                pc.match_substring(index.column("_state"), needle, ignore_case=True),
            ),
            pc.match_substring(index.column("_family"), needle, ignore_case=True),
        )
        index = index.filter(keep)
    shown = index.slice(offset, limit).to_pylist()
    by_store = plans(sorted({str(r["store_id"]) for r in shown})) if plans and shown else {}
    rows = [
        {
            "key": row["_key"],
            "state": row["_state"],
            **{k: row.get(k) for k in SERIES_COLUMNS[3:]},
            "next_plan": next_plan(
                series_plans(by_store.get(str(row["store_id"]), []), str(row["item_id"])),
                row.get("last_sale_day"),
            ),
        }
        for row in shown
    ]
    return _jsonable({"total": index.num_rows, "query": query, "rows": rows})


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


def series_plans(plan_rows: list[dict[str, Any]], item_id: str) -> list[dict[str, Any]]:
    """The live plans (not cancelled) of a store's rows that touch ``item_id``, by start."""
    found = [
        {k: r[k] for k in ("plan_id", "kind", "start_date", "end_date", "item_id", "depth")}
        for r in plan_rows
        if not r.get("cancelled") and r.get("item_id") in ("*", item_id)
    ]
    return sorted(found, key=lambda r: (r["start_date"], r["plan_id"]))


def next_plan(plans: list[dict[str, Any]], after: date | None) -> dict[str, Any] | None:
    """The first plan not over by the day after ``after`` (the series' last sale day)."""
    if after is None:
        return plans[0] if plans else None
    return next((p for p in plans if p["end_date"] > after), None)


def newest_through(forecast_rows: list[dict[str, Any]]) -> date:
    """The last day of actuals behind the newest of a series' forecasts (rows of one series)."""
    newest = max(forecast_rows, key=lambda r: int(r["model_version"]))
    through: date = newest["data_through"]
    return through


def chart_data(
    key: str,
    forecast_rows: list[dict[str, Any]],
    daily_rows: list[dict[str, Any]],
    family: str | None,
    history_days: int = HISTORY_DAYS,
    plans: list[dict[str, Any]] | None = None,
) -> ChartData | None:
    """The newest served forecast of the series with its recent actuals and the plans over
    the days shown; None without one."""
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
    end = points[-1][0] if points else through
    shown = [
        (p["kind"], max(p["start_date"], start), min(p["end_date"], end))
        for p in plans or []
        if p["end_date"] > start and p["start_date"] <= end
    ]
    return ChartData(
        key=key,
        model_version=newest,
        method=first["method"],
        family=family,
        data_through=through,
        points=points,
        history=history,
        plans=shown,
    )


def quarantine_summary(table: "pa.Table | None", recent: int = 20) -> dict[str, Any]:
    """Quarantined records: how many, by reason (most first), and the latest few; counted in
    Arrow, only the few shown become Python rows."""
    import pyarrow.compute as pc

    if table is None or table.num_rows == 0:
        return {"total": 0, "reasons": [], "recent": []}
    counts = table.group_by("reason").aggregate([("reason", "count")]).to_pylist()
    reasons = sorted(counts, key=lambda r: (-r["reason_count"], str(r["reason"])))[:20]
    latest = table.take(
        pc.select_k_unstable(table, k=recent, sort_keys=[("quarantined_at", "descending")])
    ).to_pylist()
    latest.sort(key=lambda r: r["quarantined_at"], reverse=True)
    return {
        "total": table.num_rows,
        "reasons": [{"reason": str(r["reason"]), "count": r["reason_count"]} for r in reasons],
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


def outages_view(outages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The systems series wait for, by name, each with the UTC time it failed from."""
    shown = []
    for system, o in sorted(outages.items()):
        since = datetime.fromtimestamp(float(o["since"]), UTC).isoformat()[:19]
        shown.append({**o, "system": system, "since": since})
    return shown


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """Dates and times as ISO text, as the API sends them."""
    out: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return out


class LagReader:
    """The ingest lag (``shelfcast status``'s ``lag``) from one Kafka consumer kept for the
    console's life, not one per request; one read at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: Any = None
        self._lock = threading.Lock()

    def lag(self) -> dict[str, Any]:
        with self._lock:
            if self._consumer is None:
                from confluent_kafka import Consumer

                from shelfcast.kafka import client_config

                self._consumer = Consumer(
                    {
                        **client_config(self.settings),
                        "group.id": "shelfcast-console",
                        "enable.auto.commit": False,
                        "fetch.wait.max.ms": 50,
                    }
                )
            return ingest_lag(self.settings, self._consumer)

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


class ConsoleData:
    """The payloads of the console's pages and API, each a bounded read (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reader = TableReader(settings.delta_dir)
        self.thresholds = ThresholdStore(settings.data_dir)
        self.lags = LagReader(settings)

    # -- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``shelfcast status --json`` prints, from the console's shared readers."""
        path = self.settings.service_status_file
        try:
            service = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            service = {}
        # Counted on the two columns, not on the page's sorted index (cached apart).
        states, families = count_series(self.reader.table("series_state", ["status", "family"]))
        return {
            "service": service,
            "lag": self.lags.lag(),
            "series": states,
            "families": families,
            "coordinator": coordinator_status(self.settings),
        }

    def series_state(self) -> "pa.Table | None":
        """``series_state``'s console columns as :func:`series_index`."""
        return series_index(self.reader.table("series_state", SERIES_COLUMNS))

    def store_plans(self, stores: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The plans of ``stores`` (a page's), each store's partition read alone."""
        return {store: self.reader.rows("plans", store_id=store) for store in stores}

    # -- views --------------------------------------------------------------------------

    def health(self, status: dict[str, Any]) -> dict[str, Any]:
        batches = status.get("service", {}).get("recent_batches", [])
        quarantined = self.reader.table(
            "quarantine", ["reason", "quarantined_at", "source_partition", "source_offset"]
        )
        return _jsonable(
            {
                "status": status,
                "batches": list(reversed(batches)),
                "events_per_second": events_per_second(batches, datetime.now(UTC)),
                "quarantine": quarantine_summary(quarantined),
                "topic": self.settings.topic_pos_sales,
            }
        )

    def series_detail(self, key: str, states: "pa.Table | None" = None) -> dict[str, Any]:
        """One series' page; its state row from ``states`` (the cached ``series_state``)
        when given, else read (the table is one file: a read costs all of it)."""
        try:
            store_id, item_id = parse_series_key(key)
        except ValueError as exc:
            raise ShelfcastError(str(exc)) from exc
        reader = self.reader
        state = (
            reader.series(store_id, item_id, "series_state")
            if states is None
            else _series_rows(states, store_id, item_id)
        )
        forecasts = reader.series(store_id, item_id, "forecasts", FORECAST_COLUMNS)
        row = state[0] if state else {}
        family = row.get("family")
        daily = (
            reader.history(store_id, item_id, newest_through(forecasts), HISTORY_DAYS)
            if forecasts
            else []
        )
        plans = series_plans(reader.rows("plans", store_id=store_id), item_id)
        chart = chart_data(key, forecasts, daily, family, plans=plans)
        figure = figure_spec(chart) if chart is not None else None
        return _jsonable(
            {
                "key": key,
                "state": row or None,
                "forecast": None
                if chart is None
                else {
                    "model_version": chart.model_version,
                    "method": chart.method,
                    "family": chart.family,
                    "data_through": chart.data_through,
                    "points": [
                        {"day": d, "yhat": y, "yhat_lower": lo, "yhat_upper": hi}
                        for d, y, lo, hi in chart.points
                    ],
                },
                "history": [] if chart is None else [[d, u] for d, u in chart.history],
                "models": model_history(forecasts, self._live_errors(store_id, item_id)),
                "plans": plans,
                "next_plan": next_plan(plans, row.get("last_sale_day")),
                "figure": figure,
            }
        )

    def _live_errors(self, store_id: str, item_id: str) -> list[dict[str, Any]]:
        """The series' ``drift`` rows, only what :func:`model_history` reads of them."""
        columns = ["model_version", "scaled_error"]
        return self.reader.rows("drift", columns, store_id=store_id, item_id=item_id)

    def threshold_view(self) -> dict[str, Any]:
        store = self.thresholds
        values, revision = store.current()
        return {
            "values": values.model_dump(mode="json"),
            "revision": revision,
            "descriptions": {k: f.description for k, f in Thresholds.model_fields.items()},
            "history": list(reversed(store.history(limit=100))),
        }

    def close(self) -> None:
        self.lags.close()


def _series_rows(index: "pa.Table", store_id: str, item_id: str) -> list[dict[str, Any]]:
    """The state row of one series in :func:`series_index`'s table, without its extras."""
    import pyarrow.compute as pc

    if index.num_rows == 0:  # series_index leaves an empty table as it is
        return []
    found = index.filter(pc.equal(index.column("_key"), series_key(store_id, item_id)))
    rows: list[dict[str, Any]] = found.select(
        [c for c in found.column_names if not c.startswith("_")]
    ).to_pylist()
    return rows
