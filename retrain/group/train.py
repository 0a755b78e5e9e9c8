"""The body of a group retrain (a Ray task): read the group's series, plans and stores from
Delta, run the group's study, fit, and record the model in MLflow.

Kept apart from the per-series task: it reads a whole group, and runs on its own schedule
(:class:`retrain.group.config.GroupSpec`), not on every wave.
"""

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from contracts.series import series_key
from retrain.errors import RetrainError
from retrain.group.config import GroupSpec
from retrain.group.features import GroupSeries, series_input
from retrain.group.model import GroupModel, Progress, silent
from retrain.group.tuning import tune_group
from retrain.kernel.calendar import CalendarConfig
from retrain.stores.history import load_group, store_ids
from retrain.stores.plans import load_plans, load_stores
from retrain.stores.registry import GroupRecord, Tracker
from retrain.stores.studies import StudyRef, open_study

__all__ = ["GroupStores", "train_group"]


@dataclass(frozen=True)
class GroupStores:
    """Where a group retrain reads and writes (from the task spec)."""

    daily_sales_uri: str
    plans_uri: str
    stores_uri: str
    journal_dir: str
    journal_shards: int
    optuna_url: str | None
    tracking_uri: str
    experiment: str
    calendar: CalendarConfig
    mlflow_retries: int | None = None  # see TaskSpec

    def __repr__(self) -> str:  # the store URLs may hold credentials
        return f"GroupStores({self.daily_sales_uri!r})"


def train_group(
    group: str,
    version: int | None,
    stores: GroupStores,
    spec: GroupSpec,
    progress: Progress = silent,
) -> GroupRecord:
    """Retrain ``group`` on ``daily_sales`` at ``version`` (None: the latest); ``progress``
    is told each step."""
    began = time.perf_counter()
    progress("reading the group's history")
    members = spec.stores_of(group, store_ids(stores.daily_sales_uri, version))
    if members is not None and not members:
        raise RetrainError(f"Group {group!r} has no store with sales yet.")
    inputs, through = _inputs(members, version, stores, spec)
    progress(f"read {len(inputs):,} series in {time.perf_counter() - began:.0f} s")
    ref = StudyRef(Path(stores.journal_dir), stores.journal_shards, stores.optuna_url)
    study = open_study(ref, f"group.{group}", cold=False, seed=spec.tune.seed)
    model: GroupModel = tune_group(inputs, through, study, spec.tune, progress)
    progress("recording the model in MLflow")
    tracker = Tracker(
        stores.tracking_uri, stores.experiment, create=False, retries=stores.mlflow_retries
    )
    seconds = time.perf_counter() - began
    return tracker.record_group(
        group,
        model.to_bytes(),
        {
            **model.params.as_dict(),
            "use_plans": model.use_plans,
            "folds": len(model.cutoffs),
            "cpus": spec.cpus,
        },
        {
            "validation_mae": model.score if model.score is not None else float("nan"),
            "tuning_mae": model.tuning_score or float("nan"),
            "fit_core_seconds": model.fit_seconds,
            "seconds": seconds,
            "series": float(len(inputs)),
            "rows": float(model.rows),
        },
        through,
        len(inputs),
        model.rows,
        model.score,
    )


def _inputs(
    members: list[str] | None, version: int | None, stores: GroupStores, spec: GroupSpec
) -> tuple[list[GroupSeries], date]:
    """The group's series with their plans and store records, and its newest day. The rows
    read go once the inputs are built (~6 KB a series: 600 MB at 100,000)."""
    rows, through = load_group(stores.daily_sales_uri, members, version, spec.history_days)
    plans = load_plans(stores.plans_uri, members)
    infos = load_stores(stores.stores_uri)
    inputs = [
        series_input(
            series_key(one.store_id, one.item_id),
            one.store_id,
            one.item_id,
            one.start,
            one.values,
            plans.get(one.store_id),
            infos.get(one.store_id),
            stores.calendar,
            spec.tune.horizon,
            price=one.price,
        )
        for one in rows
    ]
    return inputs, through
