"""The Optuna storage edge: persisted Optuna studies, with a warm-start state and a serial.

The group models' studies live here (a few per cluster). The series' studies moved to the
study table (:mod:`retrain.stores.study_table`); :func:`legacy_study` reads a series' study
of before, once, for its move. Default: JournalStorage on files under
``<data_dir>/optuna``, sharded by name; a database URL (PostgreSQL in cluster mode) replaces
it. Storages are opened once per worker process.

A journal's writers take an ``flock`` on ``<journal>.flock``, which the kernel releases when
its holder dies. Optuna's default lock is a symlink that outlives a worker killed while
writing (Ray's force cancel of a hung task, the OOM killer): every writer of that journal then
waited out its 30 s grace period, and the killed task's retry ran over a 30 s task timeout.
Every process writing a journal must be of this version or later (the two locks do not see
each other).
"""

import fcntl
import os
import threading
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from retrain.errors import InfrastructureError, RetrainError
from retrain.kernel.fallback import WarmState
from retrain.prophet.fit import Params
from retrain.stores.transient import transient

__all__ = [
    "JournalFlock",
    "StudyRef",
    "legacy_study",
    "open_study",
    "parse_saved",
    "save_warm_state",
    "saved_serial",
    "saved_state",
    "study_name",
    "warm_state",
]

_WARM = "shelfcast_warm"
# Written separately before 2026-11 (two storage writes); still read.
_OLD_PARAMS = "shelfcast_params"
_OLD_INIT = "shelfcast_stan_init"


def study_name(store_id: str, item_id: str) -> str:
    return f"shelfcast|{store_id}|{item_id}"


T = TypeVar("T")


class JournalFlock(JournalFileOpenLock):
    """A journal's write lock as an ``flock``: released by the kernel when its holder dies.

    A subclass of Optuna's open lock only for its type; every thread takes a descriptor of its
    own (an ``flock`` belongs to an open file, so threads exclude each other too)."""

    def __init__(self, journal: str) -> None:
        super().__init__(journal)
        self.path = journal + ".flock"
        self._held = threading.local()

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits; the GIL is released meanwhile
        except BaseException:
            os.close(fd)
            raise
        self._held.fd = fd
        return True

    def release(self) -> None:
        fd = getattr(self._held, "fd", None)
        if fd is None:
            raise RuntimeError(f"{self.path} is not held by this thread")
        self._held.fd = None
        os.close(fd)  # closing the only descriptor releases the lock


@cache
def _journal(path: str) -> BaseStorage:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFlock(path)))


def _storage_call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the Optuna storage, its failures translated: an outage (the
    database or the journal's disk away) is retried by the coordinator until it answers."""
    try:
        return fn(*args, **kwargs)
    except (KeyError, RetrainError):
        raise
    except Exception as exc:
        if transient(exc):
            raise InfrastructureError(
                f"The Optuna storage failed while {what}: {exc}. It is retried until the "
                "storage answers; check SHELFCAST_OPTUNA_STORAGE's database, or the data dir's "
                "disk.",
                "Optuna storage",
            ) from exc
        raise RetrainError(f"The Optuna storage refused {what}: {exc}") from exc


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
            text = (
                f"Cannot open the Optuna storage ({'database' if self.url else self.journal_dir}):"
                f" {exc}. Check SHELFCAST_OPTUNA_STORAGE or that the data dir is writable."
            )
            if transient(exc):
                raise InfrastructureError(text, "Optuna storage") from exc
            raise RetrainError(text) from exc


def open_study(ref: StudyRef, name: str, cold: bool, seed: int | None = None) -> optuna.Study:
    """Load the series' study (creating it); ``cold`` starts it over."""
    storage = ref.storage(name)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    if cold:
        try:
            _storage_call(
                f"deleting study {name}", optuna.delete_study, study_name=name, storage=storage
            )
        except KeyError:
            pass
    else:
        # Loading first: on a journal, ``create_study`` appends (and fsyncs) a create record
        # every time, even when the study exists.
        try:
            study: optuna.Study = _storage_call(
                f"loading study {name}",
                optuna.load_study,
                study_name=name,
                storage=storage,
                sampler=sampler,
            )
            return study
        except KeyError:
            pass
    created: optuna.Study = _storage_call(
        f"creating study {name}",
        optuna.create_study,
        study_name=name,
        storage=storage,
        sampler=sampler,
        direction="minimize",
        load_if_exists=True,
    )
    return created


def _attrs(study: optuna.Study) -> dict[str, Any]:
    attrs: dict[str, Any] = _storage_call(
        f"reading study {study.study_name}", lambda: study.user_attrs
    )
    return attrs


def _saved(attrs: dict[str, Any]) -> dict[str, Any]:
    saved: dict[str, Any] = attrs.get(_WARM) or {
        "params": attrs.get(_OLD_PARAMS),
        "stan_init": attrs.get(_OLD_INIT),
    }
    return saved


def saved_state(study: optuna.Study) -> tuple[WarmState, int]:
    """What the last wave left (:func:`warm_state`) and its serial (:func:`saved_serial`),
    from one read of the storage."""
    return parse_saved(_saved(_attrs(study)))


def parse_saved(saved: dict[str, Any]) -> tuple[WarmState, int]:
    """A saved state (``params``, ``stan_init``, ``choice``, ``serial``) as the warm state
    and the serial (0: none)."""
    params = saved.get("params")
    try:
        prophet = Params.from_dict(params) if params else None
    except (KeyError, TypeError, ValueError):  # the champion is not a Prophet model
        prophet = None
    warm = WarmState(params=prophet, stan_init=saved.get("stan_init"), choice=saved.get("choice"))
    serial = saved.get("serial")
    return warm, serial if isinstance(serial, int) else 0


def warm_state(study: optuna.Study) -> WarmState:
    """The params and fitted values the last wave chose, if any."""
    return saved_state(study)[0]


def saved_serial(study: optuna.Study) -> int:
    """The series' last forecast serial (its ``model_version``), 0 if none was saved here."""
    return saved_state(study)[1]


def save_warm_state(
    study: optuna.Study,
    params: dict[str, Any] | None,
    init: dict[str, Any] | None,
    choice: dict[str, Any] | None = None,
    serial: int | None = None,
) -> None:
    """One storage write (each is an fsync on a journal file)."""
    if params is not None or init is not None or choice is not None or serial is not None:
        value: dict[str, Any] = {"params": params, "stan_init": init, "choice": choice}
        if serial is not None:
            value["serial"] = serial
        _storage_call(f"writing study {study.study_name}", study.set_user_attr, _WARM, value)


def legacy_study(ref: StudyRef) -> Callable[[str], tuple[list[Any], dict[str, Any]] | None]:
    """A reader of a series' study in this Optuna storage, for the study table's first read
    of a series it does not hold: its completed trials and its saved state (warm state and
    serial), or None when the storage has no such study."""

    def read(name: str) -> tuple[list[Any], dict[str, Any]] | None:
        if not ref.url:
            shard = zlib.crc32(name.encode()) % ref.shards
            if not (ref.journal_dir / f"studies-{shard:03d}.log").is_file():
                return None  # never opened: opening would create it
        try:
            study = _storage_call(
                f"loading study {name}",
                optuna.load_study,
                study_name=name,
                storage=ref.storage(name),
            )
        except KeyError:
            return None
        trials = _storage_call(
            f"reading study {name}",
            study.get_trials,
            deepcopy=False,
            states=(optuna.trial.TrialState.COMPLETE,),
        )
        return list(trials), _saved(_attrs(study))

    return read
