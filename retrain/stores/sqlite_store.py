"""MLflow's store in a SQLite file (the default): created whole or not at all, from a template
after the node's first, and written without an fsync per commit."""

import contextlib
import os
import shutil
import sqlite3
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from retrain.private_temp import user_temp_folder

__all__ = ["create_whole", "without_fsync_per_commit"]

_DRAFT_ABANDONED_SECONDS = 600.0  # building a store's tables takes seconds


def create_whole(uri: str) -> None:
    """Create a new SQLite store's tables in a file of its own, then link it into place.

    MLflow creates them through ~50 migrations, which take ~1 CPU-s; a process killed among
    them (a Ray head lost in the first wave) left a store that no later start could open
    (``table _alembic_tmp_params already exists``), and every retrain waited on it forever.
    A store at the path is now either absent or whole. The first store built on a node is
    kept as a template (per MLflow and SQLAlchemy version, in this user's temp folder); later
    ones are copies of it. MLflow has no public call that builds the tables into a file of
    our choosing, hence its ``_initialize_tables``.
    """
    raw = uri.removeprefix("sqlite:///")
    if raw == uri or not raw or "?" in raw or raw == ":memory:":
        return  # not a file this process can build beside (in memory, or with options)
    path = Path(unquote(raw))
    with contextlib.suppress(OSError):
        if path.stat().st_size > 0:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.new"):  # a draft whose builder was killed
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > _DRAFT_ABANDONED_SECONDS:
                stale.unlink()
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    os.close(fd)
    draft = Path(name)
    try:
        template = _template()
        if template is None or not _copied(template, draft):
            _build(draft)
            if template is not None:
                _keep(draft, template)
        with contextlib.suppress(FileExistsError):  # another process's store won: use it
            os.link(draft, path)
    finally:
        for leftover in (draft, Path(f"{draft}-wal"), Path(f"{draft}-shm")):
            leftover.unlink(missing_ok=True)


def _build(draft: Path) -> None:
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    engine = sqlalchemy.create_engine(f"sqlite:///{draft}")
    try:
        _initialize_tables(engine)  # type: ignore[no-untyped-call]
    finally:
        engine.dispose()  # the last connection checkpoints the WAL into the file


def _template() -> Path | None:
    """Where this node keeps the template of a new store for the MLflow and SQLAlchemy
    installed (their migrations and DDL make its tables); None without a private folder."""
    import mlflow
    import sqlalchemy

    folder = user_temp_folder()
    if folder is None:
        return None
    return folder / f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}.db"


def _copied(template: Path, draft: Path) -> bool:
    """Whether ``draft`` is now a whole copy of ``template``; if not (the template absent or
    damaged), ``draft`` is left empty for a build."""
    rows = 0
    try:
        shutil.copyfile(template, draft)
        read_only = f"file:{quote(str(draft))}?mode=ro"
        with contextlib.closing(sqlite3.connect(read_only, uri=True)) as db:
            (rows,) = db.execute("SELECT count(*) FROM alembic_version").fetchone()
    except (OSError, sqlite3.Error):
        pass
    if rows == 1:
        return True
    with contextlib.suppress(OSError):
        draft.write_bytes(b"")
    return False


def _keep(store: Path, template: Path) -> None:
    """Copy a store just built to ``template``, whole or not at all (a failure only costs
    the next store a build of its own)."""
    fd, name = tempfile.mkstemp(prefix=f".{template.name}.", suffix=".new", dir=template.parent)
    os.close(fd)
    try:
        shutil.copyfile(store, name)
        os.replace(name, template)
    except OSError:
        Path(name).unlink(missing_ok=True)


@cache
def without_fsync_per_commit() -> None:
    """WAL and ``synchronous=NORMAL`` on every SQLite connection SQLAlchemy opens here."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def pragmas(connection: Any, _record: Any) -> None:
        if isinstance(connection, sqlite3.Connection):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    event.listen(Engine, "connect", pragmas)
