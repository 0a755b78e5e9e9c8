"""The body of one Ray task: load one series at a data version, re-tune, refit, forecast,
and record the run and model version in MLflow.

Recording here, not on the coordinator, keeps the per-series MLflow work (~20-25 ms, six
calls) as parallel as the fits: one coordinator recording every series capped a wave at ~30
series a second whatever the cluster's size. Kafka stays on the coordinator, once per result.
"""

import os
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from retrain.cluster.queue import Job
from retrain.kernel.fallback import SeriesFit, WarmState, retrain_one
from retrain.kernel.tuning import TuneConfig
from retrain.prophet.fit import FitOptions, FitStats
from retrain.stores.history import load_history
from retrain.stores.studies import StudyRef, open_study, save_warm_state, study_name, warm_state

__all__ = ["TaskResult", "TaskSpec", "run_job"]


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


@dataclass(frozen=True)
class TaskResult:
    """One finished task: the job it ran, what came out, and where the time went."""

    job: Job
    fit: SeriesFit
    pid: int
    seconds: float
    load_seconds: float
    run_id: str
    model_version: int
    record_seconds: float
    node_id: str = ""  # the Ray node the task ran on


@cache
def _tracker(uri: str, experiment: str) -> Any:
    from retrain.stores.registry import Tracker

    return Tracker(uri, experiment, create=False)


def run_job(
    job: Job, spec: TaskSpec, reporter: Any = None, wave_run_id: str | None = None
) -> TaskResult:
    """Retrain one series; every modelling failure falls back inside (see ``retrain_one``).

    ``reporter`` (the coordinator's handle) hears that the job started and in which process;
    the series' MLflow run is a child of ``wave_run_id``. Failing to record raises (the
    coordinator retries the job): a forecast is only published with its model version.
    """
    began = time.perf_counter()
    if reporter is not None:
        reporter.started.remote(job.key, os.getpid())
    history = load_history(
        spec.daily_sales_uri, job.store_id, job.item_id, job.version, spec.history_days
    )
    loaded = time.perf_counter()
    ref = StudyRef(spec.journal_dir, spec.journal_shards, spec.optuna_url)
    study = open_study(ref, study_name(job.store_id, job.item_id), cold=job.cold)
    warm = WarmState() if job.cold else warm_state(study)

    def last_good() -> str | None:
        champion: str | None = _tracker(spec.tracking_uri, spec.experiment).champion_json(
            job.store_id, job.item_id
        )
        return champion

    with tempfile.TemporaryDirectory(prefix="shelfcast-fit-") as fit_dir:
        options = FitOptions(
            Path(fit_dir), spec.backend, spec.uncertainty_samples, stats=FitStats()
        )
        fit = retrain_one(history, spec.tune, options, study, warm, last_good)
    if fit.method in ("tuned", "defaults"):
        save_warm_state(study, fit.params, fit.stan_init, fit.choice)
    recording = time.perf_counter()
    run_id, version = _tracker(spec.tracking_uri, spec.experiment).record_series(
        wave_run_id,
        job.store_id,
        job.item_id,
        fit,
        {"data_version": job.version, "cold": job.cold, "attempt": job.attempts + 1},
    )
    finished = time.perf_counter()
    import ray

    return TaskResult(
        job,
        fit,
        os.getpid(),
        seconds=finished - began,
        load_seconds=loaded - began,
        run_id=run_id,
        model_version=version,
        record_seconds=finished - recording,
        node_id=ray.get_runtime_context().get_node_id() if ray.is_initialized() else "",
    )
