"""What the series of one batch read once and share: each store's daily rows, its plans, the
store table, and the group model's forecasts, made for every series of the batch in one call.

A series' own read still fails alone: a failure is kept for the series that caused it and
raised in its turn, and a batched prediction that fails is made again for the series alone.
"""

from dataclasses import replace
from datetime import date
from functools import cache, lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from retrain.cluster.batches import Batch
from retrain.cluster.queue import Job
from retrain.errors import InfrastructureError
from retrain.group.features import GroupSeries, group_view, series_input
from retrain.group.model import GroupModel
from retrain.kernel.families import GroupView
from retrain.kernel.plans import DayPlan, Plan, StoreInfo, day_plan, plans_for
from retrain.kernel.series import History
from retrain.kernel.tuning import TuneConfig
from retrain.stores.history import read_store, series_history
from retrain.stores.plans import load_plans, load_stores
from retrain.stores.registry import GroupRecord

__all__ = ["BatchReads", "Known", "tracker"]


@cache
def tracker(uri: str, experiment: str, retries: int | None) -> Any:
    """The worker's MLflow tracker (one per process)."""
    from retrain.stores.registry import Tracker

    return Tracker(uri, experiment, create=False, retries=retries)


@lru_cache(maxsize=4)
def _group_model(record: GroupRecord, uri: str, experiment: str, retries: int | None) -> GroupModel:
    """A group model, loaded once per worker and version (a worker keeps it in memory)."""
    return GroupModel.from_bytes(tracker(uri, experiment, retries).group_model_bytes(record))


class Known:
    """A series' plans ahead: its tuning config (with its store's calendar), its day plan,
    and its store's plans and record (None each when there are none)."""

    def __init__(
        self,
        tune: TuneConfig,
        plan: DayPlan | None,
        plans: list[Plan] | None,
        store: StoreInfo | None,
    ) -> None:
        self.tune, self.plan, self.plans, self.store = tune, plan, plans, store


class BatchReads:
    """The reads of one batch, each made once (``spec`` is the task's
    :class:`~retrain.cluster.task.TaskSpec`)."""

    def __init__(self, spec: Any, batch: Batch) -> None:
        self.spec, self.batch = spec, batch
        self._rows: dict[tuple[str, int], pa.Table | Exception] = {}
        self._histories: dict[str, History | Exception] = {}
        self._plans: dict[str, list[Plan] | None] = {}
        self._stores: dict[str, StoreInfo] | None = None
        self._known: dict[str, Known] = {}
        self._forecasts: dict[str, np.ndarray] = {}

    def history(self, job: Job) -> History:
        """The series' days at its job's version (its store read once per batch)."""
        found = self._histories.get(job.key)
        if found is None:
            try:
                rows = self._store_rows(job.store_id, job.version)
                found = series_history(
                    rows, job.store_id, job.item_id, job.version, self.spec.history_days
                )
            except Exception as exc:  # kept for its own turn
                found = exc
            self._histories[job.key] = found
        if isinstance(found, Exception):
            raise found
        return found

    def _store_rows(self, store_id: str, version: int) -> pa.Table:
        found = self._rows.get((store_id, version))
        if found is None:
            try:
                found = read_store(self.spec.daily_sales_uri, store_id, version)
            except Exception as exc:
                found = exc
            self._rows[(store_id, version)] = found
        if isinstance(found, Exception):
            raise found
        return found

    def known(self, job: Job, history: History) -> Known:
        """The series' plans and store record, and the tuning config with its calendar."""
        found = self._known.get(job.key)
        if found is not None:
            return found
        spec = self.spec
        plans = self._store_plans(job.store_id)
        store = self._store(job.store_id)
        tune = spec.tune
        if store is not None:
            tune = replace(tune, calendar=store.calendar(tune.calendar))
        plan = None
        if plans is not None or store is not None:
            plan = day_plan(
                history.start,
                len(history.values) + tune.horizon,
                plans_for(plans or (), job.item_id),
                store,
                spec.tune.calendar,
            )
        found = self._known[job.key] = Known(tune, plan, plans, store)
        return found

    def _store_plans(self, store_id: str) -> list[Plan] | None:
        if not self.spec.plans_uri:
            return None
        if store_id not in self._plans:
            stores = sorted({job.store_id for job in self.batch.jobs})
            found = load_plans(self.spec.plans_uri, stores)
            for one in stores:
                self._plans[one] = found.get(one)
        return self._plans[store_id]

    def _store(self, store_id: str) -> StoreInfo | None:
        if not self.spec.stores_uri:
            return None
        if self._stores is None:
            self._stores = load_stores(self.spec.stores_uri)
        return self._stores.get(store_id)

    def view(self, job: Job, history: History, group: GroupRecord) -> GroupView:
        """The group model's forecast of the series from its fresh days, and its folds'."""
        spec = self.spec
        model = _group_model(group, spec.tracking_uri, spec.experiment, spec.mlflow_retries)
        forecast = self._forecasts.pop(job.key, None)
        if forecast is None:
            forecast = self._predict(job, history, group, model)
        return group_view(
            forecast,
            model.cutoffs,
            model.folds.get(job.key),
            str(group.version),
            model.ratio_band if job.key in model.folds else model.young_band,
            history.start,
        )

    def _input(self, job: Job, history: History) -> GroupSeries:
        known = self.known(job, history)
        return series_input(
            job.key,
            job.store_id,
            job.item_id,
            history.start,
            history.values,
            known.plans,
            known.store,
            self.spec.tune.calendar,
            self.spec.tune.horizon,
            price=history.price,
        )

    def _input_at(self, job: Job, end: date) -> GroupSeries | None:
        """``job``'s input if its days end on ``end``; None if they do not, or cannot be read
        (its own failure, raised in its own turn)."""
        try:
            history = self.history(job)
            return self._input(job, history) if history.end == end else None
        except Exception:
            return None

    def _predict(
        self, job: Job, history: History, group: GroupRecord, model: GroupModel
    ) -> np.ndarray:
        """``job``'s forecast, made in one call with every series of the batch that has the
        same group model and last day and no forecast yet (theirs are kept for their turn)."""
        inputs = [self._input(job, history)]
        for index, other in enumerate(self.batch.jobs):
            if other.key == job.key or other.key in self._forecasts:
                continue
            if self.batch.group(index) == group:
                found = self._input_at(other, history.end)
                if found is not None:
                    inputs.append(found)
        end: date = history.end
        if len(inputs) > 1:
            try:
                made = model.predict(inputs, end)
            except InfrastructureError:
                raise
            except Exception:  # one series' input broke the call: each goes on its own
                made = {}
            if job.key in made:
                for key, values in made.items():
                    if key != job.key:
                        self._forecasts[key] = values
                return made[job.key]
        return model.predict(inputs[:1], end)[job.key]
