"""``shelfcast import SALES.csv|SALES.parquet``: years of daily history straight into Delta.

The file (CSV, plain or .gz, or Parquet: one file or a folder of them) has one row per series
and day: ``date, store, item, sales`` (replay's CSV), or the table's own names ``day,
store_id, item_id, units``; ``revenue`` and ``returns`` are optional. It is read once into a
staging folder split by store (bounded memory, any row order), then appended to
``daily_sales`` a few stores at a time, each store one file, and ``series_state`` gets a row
per series; :mod:`streaming.bulk` says what an imported row is and what the import refuses.
"""

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from shelfcast.errors import ShelfcastError
from shelfcast.settings import Settings
from streaming.bulk import BulkLoad, ImportReport, daily_rows
from streaming.errors import StreamingError
from streaming.tables import TableStore

__all__ = ["import_history", "input_identity"]

log = logging.getLogger("shelfcast.import")

# Input names -> the table's.
_ALIASES = {"date": "day", "store": "store_id", "item": "item_id", "sales": "units"}
_NEEDED = ("day", "store_id", "item_id", "units")
_OPTIONAL = ("revenue", "returns")
# Rows appended per daily_sales commit (whole stores; a store is never split).
CHUNK_ROWS = 4_000_000
# A service whose status file changed this recently is taken to be running.
_ALIVE_SECONDS = 60.0


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    else:
        found = [path] if path.is_file() else []
    if not found:
        raise ShelfcastError(f"No file at {path}: give a CSV (.csv, .csv.gz) or Parquet file.")
    return found


def _format(files: list[Path]) -> str:
    names = {p.name.lower() for p in files}
    if all(n.endswith(".parquet") for n in names):
        return "parquet"
    if all(n.endswith((".csv", ".csv.gz")) for n in names):
        return "csv"
    raise ShelfcastError(
        "The input must be CSV files (.csv, .csv.gz) or Parquet files (.parquet), not a mix."
    )


def input_identity(path: Path) -> str:
    """The import's application id: the SHA-256 of its files' names and bytes (the same
    file imported again is recognised, and a load cut short resumes)."""
    digest = hashlib.sha256()
    for file in _files(path):
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"shelfcast-import-{digest.hexdigest()[:20]}"


def _dataset(path: Path) -> Any:
    import pyarrow.csv as csv
    import pyarrow.dataset as ds

    files = _files(path)
    kind = _format(files)
    if kind == "csv":
        strings = {name: pa.string() for name in ("store", "item", "store_id", "item_id")}
        fmt: Any = ds.CsvFileFormat(convert_options=csv.ConvertOptions(column_types=strings))
    else:
        fmt = ds.ParquetFileFormat()
    try:
        dataset = ds.dataset([str(f) for f in files], format=fmt)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ShelfcastError(f"Cannot read {path}: {exc}") from exc
    names = {_ALIASES.get(n, n): n for n in dataset.schema.names}
    missing = [n for n in _NEEDED if n not in names]
    if missing:
        raise ShelfcastError(
            f"{path} lacks columns {missing}: expected date,store,item,sales "
            "(or day,store_id,item_id,units), optionally revenue and returns."
        )
    return dataset, names


def _stage(path: Path, staging: Path) -> int:
    """The input, in the table's names and types, split by store under ``staging``; its
    row count."""
    import pyarrow.dataset as ds

    dataset, names = _dataset(path)
    columns = {
        "store_id": ds.field(names["store_id"]).cast(pa.string()),
        "item_id": ds.field(names["item_id"]).cast(pa.string()),
        "day": ds.field(names["day"]).cast(pa.date32()),
        "units": ds.field(names["units"]).cast(pa.float64()),
    }
    for name in _OPTIONAL:
        if name in names:
            columns[name] = ds.field(names[name]).cast(pa.float64())
    try:
        scanner = dataset.scanner(columns=columns)
        rows = 0

        def counted() -> Iterator[pa.RecordBatch]:
            nonlocal rows
            for batch in scanner.to_batches():
                rows += batch.num_rows
                yield batch

        ds.write_dataset(
            counted(),
            staging,
            schema=scanner.projected_schema,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("store_id", pa.string())]), flavor="hive"),
            max_partitions=1_000_000,
            max_open_files=512,
            existing_data_behavior="overwrite_or_ignore",
        )
    except (OSError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ShelfcastError(
            f"Cannot read {path}: {exc}. Check the columns' values (dates as YYYY-MM-DD)."
        ) from exc
    return rows


def _chunks(staging: Path, rows_per_chunk: int) -> Iterator[list[Any]]:
    """The staged stores in a fixed order, grouped into chunks of about ``rows_per_chunk``
    rows (the same chunks every run: a resumed load skips the ones that landed)."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(staging, format="parquet", partitioning="hive")
    by_store: dict[str, list[Any]] = {}
    for fragment in dataset.get_fragments():
        store = str(ds.get_partition_keys(fragment.partition_expression)["store_id"])
        by_store.setdefault(store, []).append(fragment)
    chunk: list[Any] = []
    size = 0
    for store in sorted(by_store):
        fragments = sorted(by_store[store], key=lambda f: str(f.path))
        chunk.extend(fragments)
        size += sum(f.metadata.num_rows for f in fragments)
        if size >= rows_per_chunk:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _read(fragments: list[Any]) -> pa.Table:
    import pyarrow.dataset as ds

    parts = []
    for fragment in fragments:
        store = ds.get_partition_keys(fragment.partition_expression)["store_id"]
        table = fragment.to_table()
        parts.append(table.append_column("store_id", pa.array([store] * table.num_rows)))
    return pa.concat_tables(parts, promote_options="default")


def _service_running(settings: Settings) -> bool:
    path = settings.service_status_file
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if status.get("stopped_at"):
        return False
    return time.time() - path.stat().st_mtime < _ALIVE_SECONDS


def import_history(
    settings: Settings, path: Path, rows_per_chunk: int = CHUNK_ROWS
) -> ImportReport:
    """Import ``path`` into the data dir's tables (see the module); raises
    :class:`ShelfcastError` with what to do."""
    if _service_running(settings):
        raise ShelfcastError(
            "The service is running on this data dir (its status file changed in the last "
            f"{_ALIVE_SECONDS:.0f} s): stop it first; it is the tables' only writer."
        )
    began = time.perf_counter()
    app_id = input_identity(path)
    store = TableStore(settings.delta_dir)
    try:
        load = BulkLoad(store, app_id, datetime.now(UTC).date())
        if load.done_before():
            log.info("%s was imported before (%s): nothing to do", path, app_id)
            return ImportReport(app_id, 0, 0, 0, None, None, 0, 0, 0, already_done=True)
        staging = settings.data_dir / f"import-staging-{app_id[-20:]}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            read = _stage(path, staging)
            log.info("read %d rows of %s in %.1f s", read, path, time.perf_counter() - began)
            for number, fragments in enumerate(_chunks(staging, rows_per_chunk)):
                daily, duplicates = daily_rows(_read(fragments))
                load.add(number, daily, duplicates)
                log.info("chunk %d: %d rows of %d stores", number, daily.num_rows, len(fragments))
            report = load.finish()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except StreamingError as exc:
        raise ShelfcastError(f"Import of {path} failed: {exc}") from exc
    log.info(
        "imported %s in %.1f s: %s",
        path,
        time.perf_counter() - began,
        json.dumps(asdict(report), default=str),
    )
    return report
