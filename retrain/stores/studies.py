"""The Optuna storage edge: one persisted study per series, and its warm-start state.

Default: JournalStorage on files under ``<data_dir>/optuna``, sharded by series, because
opening a journal replays it whole and SQLite locks under parallel writers. A database URL
(PostgreSQL in cluster mode) replaces it. Storages are opened once per worker process.
"""

import zlib
from functools import cache
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from retrain.errors import RetrainError
from retrain.kernel.fallback import WarmState
from retrain.prophet.fit import Params

__all__ = ["StudyRef", "open_study", "save_warm_state", "study_name", "warm_state"]

_WARM = "shelfcast_warm"
# Written separately before 2026-11 (two storage writes); still read.
_OLD_PARAMS = "shelfcast_params"
_OLD_INIT = "shelfcast_stan_init"


def study_name(store_id: str, item_id: str) -> str:
    return f"shelfcast|{store_id}|{item_id}"


@cache
def _journal(path: str) -> BaseStorage:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(path))


@cache
def _database(url: str) -> BaseStorage:
    return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


class StudyRef:
    """Where one series' study lives: a database URL or a journal shard folder."""

    def __init__(self, journal_dir: Path, shards: int, url: str | None = None) -> None:
        self.journal_dir = journal_dir
        self.shards = shards
        self.url = url

    def storage(self, name: str) -> BaseStorage:
        try:
            if self.url:
                return _database(self.url)
            shard = zlib.crc32(name.encode()) % self.shards
            return _journal(str(self.journal_dir / f"studies-{shard:03d}.log"))
        except Exception as exc:
            raise RetrainError(
                f"Cannot open the Optuna storage ({'database' if self.url else self.journal_dir}):"
                f" {exc}. Check SHELFCAST_OPTUNA_STORAGE or that the data dir is writable."
            ) from exc


def open_study(ref: StudyRef, name: str, cold: bool, seed: int | None = None) -> optuna.Study:
    """Load the series' study (creating it); ``cold`` starts it over."""
    storage = ref.storage(name)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    if cold:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass
    else:
        # Loading first: on a journal, ``create_study`` appends (and fsyncs) a create record
        # every time, even when the study exists.
        try:
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        except KeyError:
            pass
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        direction="minimize",
        load_if_exists=True,
    )


def warm_state(study: optuna.Study) -> WarmState:
    """The params and fitted values the last wave chose, if any."""
    attrs: dict[str, Any] = study.user_attrs
    saved = attrs.get(_WARM) or {
        "params": attrs.get(_OLD_PARAMS),
        "stan_init": attrs.get(_OLD_INIT),
    }
    params = saved.get("params")
    try:
        prophet = Params.from_dict(params) if params else None
    except (KeyError, TypeError, ValueError):  # the champion is not a Prophet model
        prophet = None
    return WarmState(params=prophet, stan_init=saved.get("stan_init"), choice=saved.get("choice"))


def save_warm_state(
    study: optuna.Study,
    params: dict[str, Any] | None,
    init: dict[str, Any] | None,
    choice: dict[str, Any] | None = None,
) -> None:
    """One storage write (each is an fsync on a journal file)."""
    if params is not None or init is not None or choice is not None:
        study.set_user_attr(_WARM, {"params": params, "stan_init": init, "choice": choice})
