"""Each series' study as a few rows: its warm state and serial, and its newest trials.

A series' selection only ever reads its study's newest trials (``TuneConfig.history_trials``:
:func:`retrain.kernel.tuning.tune` copies them into an in-memory study and adds the wave's
trials back), its warm state and its serial. A persisted Optuna study kept every trial and
attribute write forever: a journal grew by ~2.3 KB a series every warm wave, and a worker
replayed a whole shard before its first study there (1.7 s and ~100 MB for a 26 MB shard at
10,000 series, ~1 GB a shard at 100,000 series after 30 waves, extrapolated). Here a series
holds one state row and at most ``keep`` trial rows, whatever the waves: a wave reads them
with two indexed queries and writes the state row, its new trials and the pruning in one
transaction. Optuna still samples, on an in-memory study built from them.

Where: a database URL (``SHELFCAST_OPTUNA_STORAGE``: PostgreSQL in a cluster; the tables sit
beside Optuna's own), else an SQLite file per shard under the Optuna folder. A series with no
rows yet whose study is in the Optuna storage of before (journal files, or the database's
Optuna tables) is read from there until its first save moves it; a worker that reads a
journal replays it whole once, as before (the group models' studies stay in those files).
"""

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import FrozenTrial, TrialState

from retrain.errors import InfrastructureError, RetrainError
from retrain.kernel.fallback import WarmState
from retrain.stores.studies import parse_saved
from retrain.stores.transient import transient

__all__ = ["SeriesStudy", "StudyTable"]

T = TypeVar("T")


@dataclass
class SeriesStudy:
    """One series' study for a wave: its warm state and last serial, and its saved trials,
    which :meth:`study` makes an in-memory Optuna study of on first call (the wave adds its
    own trials after them). A series whose champion is kept never makes it: building ~25
    trials costs ~2 ms, most of a warm series' study work."""

    name: str
    warm: WarmState
    serial: int
    last_number: int  # the number of the newest trial saved (-1: none)
    state: dict[str, Any]  # the warm state as saved (params, stan_init, choice)
    seed: int | None = None
    rows: list[str] = field(default_factory=list)  # the table's trials, oldest first
    moved: list[FrozenTrial] = field(default_factory=list)  # trials of the storage before
    built: optuna.Study | None = None
    saved: int = 0  # trials of ``built`` already in the table

    def study(self) -> optuna.Study:
        if self.built is None:
            made = optuna.create_study(direction="minimize", sampler=_sampler(self.seed))
            made.add_trials([_trial_of(text) for text in self.rows] + self.moved)
            self.built, self.saved = made, len(self.rows)
        return self.built


def _trial_json(trial: FrozenTrial) -> str:
    return json.dumps(
        {
            "value": trial.value,
            "params": trial.params,
            "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
            "user_attrs": trial.user_attrs,
            "system_attrs": trial.system_attrs,
        },
        default=str,
    )


def _trial_of(text: str) -> FrozenTrial:
    data = json.loads(text)
    return optuna.trial.create_trial(
        value=data["value"],
        params=data["params"],
        distributions={k: json_to_distribution(v) for k, v in data["distributions"].items()},
        user_attrs=data["user_attrs"],
        system_attrs=data["system_attrs"],
    )


def _kept(saved: dict[str, Any]) -> dict[str, Any]:
    """The warm state of a saved state (its serial apart)."""
    return {k: saved.get(k) for k in ("params", "stan_init", "choice")}


def _sampler(seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def _wal(connection: Any, _record: Any) -> None:
    """WAL with ``synchronous=NORMAL``, as the MLflow SQLite store: a commit is an append
    without an fsync (one at each checkpoint), ~2x the study work per series otherwise. A
    crashed process loses nothing; a power cut may lose the last commits (a serial is then
    floored by the served version the hand-off gives). WAL needs a local disk: in a cluster,
    a database (SHELFCAST_OPTUNA_STORAGE)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class _Tables:
    """The two tables of one database, created on first use."""

    def __init__(self, url: str, wait: float) -> None:
        import sqlalchemy as sa

        self.meta = sa.MetaData()
        self.state = sa.Table(
            "shelfcast_study",
            self.meta,
            sa.Column("name", sa.String(512), primary_key=True),
            sa.Column("state", sa.Text, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
        self.trials = sa.Table(
            "shelfcast_study_trial",
            self.meta,
            sa.Column("name", sa.String(512), primary_key=True),
            sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("trial", sa.Text, nullable=False),
        )
        options: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            # Writers of other processes wait for the file's lock rather than fail at once.
            options = {"connect_args": {"timeout": wait}}
        self.engine = sa.create_engine(url, **options)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _wal)
        for attempt in range(3):
            try:
                self.meta.create_all(self.engine)  # checks first: a no-op once they exist
                break
            except sa.exc.DatabaseError:
                # Another worker created them between the check and the create: look again.
                if attempt == 2:
                    raise
        self.upsert = _upsert(self.engine.dialect.name)


def _upsert(dialect: str) -> Any:
    """The dialect's ``INSERT ... ON CONFLICT`` (SQLite and PostgreSQL; else a plain insert
    after a delete)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    return None


@cache
def _tables(url: str, wait: float) -> _Tables:
    return _Tables(url, wait)


class StudyTable:
    """The series' studies: ``url`` a database, else an SQLite file per shard under
    ``folder`` (``shards`` of them, by series). ``keep`` trials a series, at most; a writer
    waits ``wait`` seconds at most for an SQLite file another process holds."""

    def __init__(
        self,
        folder: Path,
        shards: int,
        url: str | None = None,
        keep: int = 50,
        wait: float = 60.0,
    ) -> None:
        self.folder, self.shards, self.url = folder, max(1, shards), url
        self.keep, self.wait = keep, wait

    def shard(self, name: str) -> int:
        return zlib.crc32(name.encode()) % self.shards

    def _url(self, name: str) -> str:
        if self.url:
            return self.url
        return f"sqlite:///{self.folder / f'studies-{self.shard(name):03d}.sqlite'}"

    def _call(self, what: str, name: str, fn: Callable[[_Tables], T]) -> T:
        """``fn`` on the series' tables, their failures translated: an outage (the database
        or the disk away, a lock not granted) is retried by the coordinator until it ends."""
        try:
            if not self.url:
                self.folder.mkdir(parents=True, exist_ok=True)
            return fn(_tables(self._url(name), self.wait))
        except RetrainError:
            raise
        except Exception as exc:
            where = "SHELFCAST_OPTUNA_STORAGE's database" if self.url else str(self.folder)
            if transient(exc):
                raise InfrastructureError(
                    f"The study table failed while {what} {name}: {exc}. It is retried until "
                    f"it answers; check {where}.",
                    "Optuna storage",
                ) from exc
            raise RetrainError(f"The study table refused {what} {name}: {exc}") from exc

    def open(
        self, name: str, cold: bool, seed: int | None = None, legacy: Any = None
    ) -> SeriesStudy:
        """The series' study for a wave; ``cold`` starts it over (its serial kept, and
        written first: a cold attempt that fails later keeps it). ``legacy(name)``: the
        series' study in the storage of before, or None (read when it has no rows here)."""
        import sqlalchemy as sa

        def read(t: _Tables) -> tuple[str | None, list[tuple[int, str]]]:
            with t.engine.connect() as conn:
                state = conn.execute(
                    sa.select(t.state.c.state).where(t.state.c.name == name)
                ).scalar()
                rows = conn.execute(
                    sa.select(t.trials.c.number, t.trials.c.trial)
                    .where(t.trials.c.name == name)
                    .order_by(t.trials.c.number)
                ).all()
            return state, [(int(n), str(text)) for n, text in rows]

        state, rows = self._call("reading", name, read)
        if state is None and legacy is not None:
            found = legacy(name)
            if found is not None:
                trials, saved = found
                warm, serial = parse_saved(saved)
                if cold:
                    return self._started_over(name, serial, seed)
                return SeriesStudy(
                    name, warm, serial, -1, _kept(saved), seed, moved=trials[-self.keep :]
                )
        saved_state = json.loads(state) if state else {}
        warm, serial = parse_saved(saved_state)
        if cold:
            return self._started_over(name, serial, seed)
        last = rows[-1][0] if rows else -1
        texts = [text for _, text in rows]
        return SeriesStudy(name, warm, serial, last, _kept(saved_state), seed, rows=texts)

    def _started_over(self, name: str, serial: int, seed: int | None) -> SeriesStudy:
        fresh = SeriesStudy(name, WarmState(), serial, -1, {}, seed)
        self._write(fresh, {"serial": serial} if serial else {}, start_over=True)
        return fresh

    def save(
        self,
        series: SeriesStudy,
        serial: int,
        warm: tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]
        | None = None,
    ) -> None:
        """The wave's serial, its warm state (params, Stan init, choice; None: the last tuned
        wave's stays) and the trials it added, in one transaction; past ``keep`` trials the
        oldest go."""
        state = series.state
        if warm is not None:
            state = {"params": warm[0], "stan_init": warm[1], "choice": warm[2]}
        self._write(series, {**state, "serial": serial})
        series.state, series.serial = state, serial

    def _write(self, series: SeriesStudy, state: dict[str, Any], start_over: bool = False) -> None:
        import sqlalchemy as sa

        name = series.name
        # Trials of the storage before move with the first save, made or not.
        study = series.study() if series.moved else series.built
        made = [] if study is None else study.get_trials(deepcopy=False)[series.saved :]
        new = [t for t in made if t.state == TrialState.COMPLETE][-self.keep :]
        first = series.last_number + 1
        numbered = [(first + i, _trial_json(t)) for i, t in enumerate(new)]
        text = json.dumps(state, default=str)

        def write(t: _Tables) -> None:
            with t.engine.begin() as conn:
                if start_over:
                    conn.execute(sa.delete(t.trials).where(t.trials.c.name == name))
                row = {"name": name, "state": text, "updated_at": time.time()}
                if t.upsert is not None:  # one statement: two writers never collide on it
                    insert = t.upsert(t.state).values(**row)
                    conn.execute(
                        insert.on_conflict_do_update(
                            index_elements=[t.state.c.name],
                            set_={"state": text, "updated_at": row["updated_at"]},
                        )
                    )
                else:
                    conn.execute(sa.delete(t.state).where(t.state.c.name == name))
                    conn.execute(sa.insert(t.state).values(**row))
                if numbered:
                    conn.execute(
                        sa.insert(t.trials),
                        [{"name": name, "number": n, "trial": s} for n, s in numbered],
                    )
                    newest = numbered[-1][0]
                    conn.execute(
                        sa.delete(t.trials).where(
                            t.trials.c.name == name, t.trials.c.number <= newest - self.keep
                        )
                    )

        self._call("writing", name, write)
        if numbered:
            series.last_number = numbered[-1][0]
        if study is not None:
            series.saved = len(study.get_trials(deepcopy=False))
        series.moved = []

    def rows(self, name: str) -> tuple[int, int]:
        """(state rows, trial rows) the series holds: what a wave leaves behind."""
        import sqlalchemy as sa

        def count(t: _Tables) -> tuple[int, int]:
            with t.engine.connect() as conn:
                states = conn.execute(
                    sa.select(sa.func.count()).where(t.state.c.name == name)
                ).scalar()
                trials = conn.execute(
                    sa.select(sa.func.count()).where(t.trials.c.name == name)
                ).scalar()
            return int(states or 0), int(trials or 0)

        return self._call("counting", name, count)
