"""The body of one Ray task: a batch of series, each in turn loaded at a data version,
re-tuned, refitted and forecast, and what it made recorded; each series fails alone.

A series with a model of its own is recorded here, a run and a model version in MLflow:
recording on the coordinator kept that work (~20-25 ms, six calls) from running as parallel
as the fits, and capped a wave at ~30 series a second whatever the cluster's size. A series
the group model alone forecasts needs neither (its model is the group's version): the task
returns its row for the wave's series table, which the coordinator stores in parts. Its
forecast's ``model_version`` is the series' serial, saved in its study table row with the
warm state (one write), so it grows with every forecast without a registry version. Kafka
stays on the coordinator, once per result.
"""

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from retrain.cluster.batch_reads import BatchReads
from retrain.cluster.batch_reads import tracker as tracker_of
from retrain.cluster.batches import HEARTBEAT_SECONDS, Batch, TaskFailure
from retrain.cluster.outages import error_text, outage_of
from retrain.cluster.queue import Job
from retrain.errors import InfrastructureError
from retrain.group.config import GroupSpec
from retrain.group.train import GroupStores
from retrain.kernel.fallback import SeriesFit, retrain_one
from retrain.kernel.families import GLOBAL, GroupView
from retrain.kernel.tuning import TuneConfig
from retrain.prophet.fit import FitOptions, FitStats
from retrain.stores.registry import GroupRecord
from retrain.stores.studies import StudyRef, legacy_study, study_name
from retrain.stores.study_table import StudyTable

__all__ = ["HEARTBEAT_SECONDS", "TaskResult", "TaskSpec", "heartbeat", "run_batch"]


@dataclass(frozen=True)
class TaskSpec:
    """What every task needs, as plain picklable data (no secrets but the store URLs, which
    stay out of its repr)."""

    daily_sales_uri: str
    history_days: int
    tune: TuneConfig
    backend: str
    uncertainty_samples: int
    journal_dir: Path
    journal_shards: int
    # Both URLs may carry credentials: kept out of the repr (a task's spec shows in Ray's
    # errors and logs).
    optuna_url: str | None = field(repr=False)
    tracking_uri: str = field(repr=False)
    experiment: str
    plans_uri: str = ""
    stores_uri: str = ""
    groups: GroupSpec = field(default_factory=GroupSpec)
    # A tracking server's failing call retried this often before it counts as an outage
    # (None: as the worker's environment says, else CLIENT_RETRIES).
    mlflow_retries: int | None = None

    def group_stores(self) -> GroupStores:
        """Where a group retrain reads and writes."""
        return GroupStores(
            self.daily_sales_uri,
            self.plans_uri,
            self.stores_uri,
            str(self.journal_dir),
            self.journal_shards,
            self.optuna_url,
            self.tracking_uri,
            self.experiment,
            self.tune.calendar,
            self.mlflow_retries,
        )


@dataclass(frozen=True)
class TaskResult:
    """One finished task: the job it ran, what came out, and where the time went."""

    job: Job
    fit: SeriesFit
    pid: int
    seconds: float
    load_seconds: float
    run_id: str  # the series' own run, or its wave's when the group model alone made it
    model_version: int  # the series' serial: it grows with every forecast
    record_seconds: float
    node_id: str = ""  # the Ray node the task ran on
    group_version: int | None = None  # the group model that served it
    group_error: str | None = None  # its group model could not be used
    # Seconds by stage: load (history, plans, stores; a batch's shared reads in its first
    # series'), study (the study table: read, save), model (selection, refit, forecast; the
    # batch's group model prediction in its first series'), record (MLflow).
    stages: dict[str, float] = field(default_factory=dict)
    registry_version: int | None = None  # the series' own model version, if it has one
    row: dict[str, Any] = field(default_factory=dict)  # its row of the wave's series table
    batch: str = ""  # the batch (one Ray task) it was retrained in


def group_alone(fit: SeriesFit) -> bool:
    """Whether the group model alone made the forecast: the series has no model of its own
    to keep (its last good model stays what it was)."""
    return fit.members == (GLOBAL,)


def series_row(result: TaskResult) -> dict[str, Any]:
    """The series' row of its wave's table: what made the forecast, and how good it was."""
    job, fit = result.job, result.fit
    return {
        "series": job.key,
        "store_id": job.store_id,
        "item_id": job.item_id,
        "model_version": result.model_version,
        "registry_version": result.registry_version,
        "run_id": result.run_id,
        "method": fit.method,
        "family": fit.family,
        "members": ",".join(fit.members),
        "runner_up_family": fit.runner_up,
        "group_model_version": result.group_version,
        "data_version": job.version,
        "data_through": fit.data_through.isoformat(),
        "reason": job.reason,
        "cold": job.cold,
        "attempt": job.attempts + 1,
        "warm": fit.warm,
        "trials": fit.trials,
        "fit_seconds": round(fit.fit_seconds, 4),
        "validation_mae": fit.validation_mae,
        "validation_mase": fit.validation_mase,
        "runner_up_validation_mae": fit.runner_up_mae,
        "fallback_reason": fit.fallback_reason,
        "params": json.dumps(fit.params or {}, sort_keys=True, default=str),
        "batch": result.batch,
    }


# Systems every series of a batch needs alike: once one is down for a series, the others
# are not tried (a Delta read is per store, so other stores' series go on).
_SHARED = frozenset({"MLflow", "Optuna storage"})


def run_batch(batch: Batch, spec: TaskSpec, reporter: Any = None) -> list[TaskResult | TaskFailure]:
    """Retrain the batch's series in turn; each one's outcome, in order. Every modelling
    failure falls back inside (see ``retrain_one``); a series that still fails fails alone
    (a :class:`TaskFailure`, with the system whose outage it was).

    ``reporter`` (the coordinator's handle) hears that the batch started, in which process,
    and its heartbeat while it runs, naming the series in progress (:func:`heartbeat`). A
    series' MLflow run is a child of its wave's; its group's model (or why it has none) comes
    with the batch; a series the group model alone forecasts has no run of its own, its row
    goes back in the result. Failing to record fails the series (the coordinator retries it;
    an MLflow, Optuna storage or Delta outage as :class:`~retrain.errors.InfrastructureError`,
    which never counts toward poison): a forecast is only published with its serial saved and
    its own model, if any, recorded. A job for a plan change (``job.reason == "plan"``)
    refits the champion with the new plans, nothing is re-tuned.
    """
    out: list[TaskResult | TaskFailure] = []
    down: TaskFailure | None = None
    with heartbeat(reporter, batch.id) as progress:
        reads, studies = BatchReads(spec, batch), _studies(spec)
        for index, job in enumerate(batch.jobs):
            if down is not None:  # each would wait out the same outage in turn
                out.append(down)
                continue
            progress.current = job.key
            wave_run = batch.wave_runs.get(job.wave_id)
            try:
                out.append(_run(job, spec, wave_run, batch.group(index), reads, studies))
            except Exception as exc:
                failed = TaskFailure(error_text(exc), outage_of(exc))
                out.append(failed)
                if failed.outage in _SHARED:
                    down = TaskFailure(
                        f"Not tried: {failed.outage} was down for an earlier series of its "
                        f"task ({failed.error})",
                        failed.outage,
                    )
    return out


def _cpu_seconds() -> float:
    """This process' CPU time, with its finished children's (a cmdstan fit is one)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Progress:
    """The series a batch is on (its heartbeat says it)."""

    current: str | None = None


@contextmanager
def heartbeat(reporter: Any, key: str, every: float = HEARTBEAT_SECONDS) -> Iterator[Progress]:
    """Tell ``reporter`` (the coordinator) that the task of ``key`` started, in which process,
    then every ``every`` seconds the CPU seconds it has used since and the series it is on
    (the yielded :class:`Progress`). A series that runs over its time limit having said
    nothing for a while (hung, stopped, its node lost), or having mostly waited, is an outage
    there, not the series' failure. A thread of the task's own process, so it stops with it."""
    progress = Progress()
    if reporter is None:
        yield progress
        return
    pid = os.getpid()
    reporter.started.remote(key, pid)
    first = _cpu_seconds()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                reporter.beat.remote(key, pid, _cpu_seconds() - first, progress.current)
            except Exception:  # the coordinator is gone: the task goes on
                return

    thread = threading.Thread(target=beat, name="shelfcast-heartbeat", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()


def _last_serial(job: Job, saved: int, tracker: Callable[[], Any]) -> int:
    """The series' last serial: the highest of its study's (``saved``), the model version its
    last served forecast carried (``job.served``: a study lost or moved, for example by a new
    shard count, must not take serials back), and, when its study has none yet, its own
    champion's registry version (its forecasts carried that before serials)."""
    if saved == 0:
        saved = tracker().champion_version(job.store_id, job.item_id)
    return max(saved, job.served or 0)


def _studies(spec: TaskSpec) -> tuple[StudyTable, Callable[[str], Any]]:
    """The series' study table, and a reader of the Optuna storage its studies were in
    before (read once for a series the table does not hold yet)."""
    ref = StudyRef(spec.journal_dir, spec.journal_shards, spec.optuna_url)
    table = StudyTable(
        spec.journal_dir, spec.journal_shards, spec.optuna_url, spec.tune.history_trials
    )
    return table, legacy_study(ref)


def _run(
    job: Job,
    spec: TaskSpec,
    wave_run_id: str | None,
    group: GroupRecord | str | None,
    reads: BatchReads,
    studies: tuple[StudyTable, Callable[[str], Any]],
) -> TaskResult:
    began = time.perf_counter()
    history = reads.history(job)
    loaded = time.perf_counter()
    table, legacy = studies
    name = study_name(job.store_id, job.item_id)

    def tracker() -> Any:  # MLflow only when needed: most group-served series never are
        return tracker_of(spec.tracking_uri, spec.experiment, spec.mlflow_retries)

    # A cold job starts the study over, its serial kept (a cold attempt that fails later
    # keeps it too).
    series = table.open(name, cold=job.cold, legacy=legacy)
    warm = series.warm
    serial = _last_serial(job, series.serial, tracker) + 1
    opened = time.perf_counter()

    def last_good() -> str | None:
        champion: str | None = tracker().champion_json(job.store_id, job.item_id)
        return champion

    ahead = reads.known(job, history)
    known = time.perf_counter()
    view: GroupView | None = None
    group_error: str | None = None
    notes: list[str] = [group] if isinstance(group, str) else []
    if isinstance(group, str):
        group = None
    if group is not None:
        try:
            view = reads.view(job, history, group)
        except InfrastructureError:
            raise  # MLflow away: the model is not broken, the series is retried
        except Exception as exc:  # a broken group model leaves the series' own families
            notes.append(f"group model {group.group} v{group.version}: {type(exc).__name__}: {exc}")
            group_error = notes[-1]
    with tempfile.TemporaryDirectory(prefix="shelfcast-fit-") as fit_dir:
        options = FitOptions(
            Path(fit_dir), spec.backend, spec.uncertainty_samples, stats=FitStats()
        )
        fit = retrain_one(
            history,
            ahead.tune,
            options,
            series.study,  # made from its saved trials only if the selection runs
            warm,
            last_good,
            view,
            ahead.plan,
            retune=job.reason != "plan",
            notes=notes,
        )
    modelled = time.perf_counter()
    # Saved before the forecast exists: a retry after a failed recording takes the next
    # serial, and serials only ever grow (a gap is harmless).
    if fit.method in ("tuned", "defaults"):
        table.save(series, serial, (fit.params, fit.stan_init, fit.choice))
    else:  # a fallback forecast keeps the warm state the last tuned wave left
        table.save(series, serial)
    recording = time.perf_counter()
    lineage: dict[str, Any] = {
        "data_version": job.version,
        "cold": job.cold,
        "attempt": job.attempts + 1,
        "reason": job.reason,
        "serial": serial,
    }
    if group is not None and fit.uses_group:
        lineage.update(group=group.group, group_version=group.version)
    version: int | None = None
    if wave_run_id is not None and group_alone(fit):
        run_id = wave_run_id  # its row goes to the wave's table, through the coordinator
    else:
        run_id, version = tracker().record_series(
            wave_run_id, job.store_id, job.item_id, fit, lineage
        )
    finished = time.perf_counter()
    import ray

    result = TaskResult(
        job,
        fit,
        os.getpid(),
        seconds=finished - began,
        load_seconds=loaded - began,
        run_id=run_id,
        model_version=serial,
        record_seconds=finished - recording,
        node_id=ray.get_runtime_context().get_node_id() if ray.is_initialized() else "",
        group_version=group.version if group is not None and fit.uses_group else None,
        group_error=group_error,
        stages={
            "load": (loaded - began) + (known - opened),
            "study": (opened - loaded) + (recording - modelled),
            "model": modelled - known,
            "record": finished - recording,
        },
        registry_version=version,
        batch=reads.batch.id,
    )
    return replace(result, row=series_row(result))
