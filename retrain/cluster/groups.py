"""The coordinator's group models: which exist, which train, when one is due again.

A group's first model is trained before its series run (they wait, keeping their place in
the queue); after that its series are forecast from the cached model while a retrain runs
beside them, when the group's newest data is ``retrain_days`` past its model, its model is
``retrain_hours`` old, or ``drift_series`` of its series drifted since. A retrain that fails
is retried later with backoff; its series meanwhile use the model they had (or none: their
own families, with the reason recorded).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from retrain.cluster.queue import Job
from retrain.group.config import GroupSpec
from retrain.stores.registry import GroupRecord

__all__ = ["GroupProgress", "GroupScheduler", "group_task_cpus"]

log = logging.getLogger("shelfcast.coordinator")

_FIRST_RETRY_SECONDS = 30.0
_MAX_RETRY_SECONDS = 1800.0


def group_task_cpus(asked: int, node_cpus: Sequence[float], series_wait: bool) -> int:
    """The CPUs a group retrain's Ray task holds: ``asked``, at most the largest node's (a
    task runs on one node: more would never be scheduled) and, unless the group's series
    wait for this model (its first, or one that broke), at most the cluster's less one. A
    retrain that held every CPU held up every series of the wave beside it: 6.5-8 min a
    week at 2,000 series on 2 CPUs (docs/scale.md)."""
    if not node_cpus:
        return asked
    cap = int(max(node_cpus))
    if not series_wait:
        cap = min(cap, int(sum(node_cpus)) - 1)
    return max(1, min(asked, cap))


@dataclass(frozen=True)
class GroupProgress:
    """A group retrain's ``progress``, told to its coordinator (a Ray actor) without waiting:
    ``shelfcast status`` shows the step a long training is at."""

    coordinator: Any
    group: str

    def __call__(self, text: str) -> None:
        self.coordinator.group_progress.remote(self.group, text)


@dataclass
class _Group:
    record: GroupRecord | None = None
    training: "asyncio.Task[None] | None" = None
    error: str | None = None
    retry_at: float = 0.0
    retry_seconds: float = _FIRST_RETRY_SECONDS
    newest: date | None = None  # the newest day its series were forecast from
    drifted: int = 0  # series submitted for drift since its model
    started_at: float = 0.0
    seconds: float | None = None  # how long its last model took to train
    progress: str | None = None  # what its (last) retrain said last (GroupProgress)

    @property
    def busy(self) -> bool:
        return self.training is not None and not self.training.done()


class GroupScheduler:
    """Group models of one coordinator (its series' groups)."""

    def __init__(
        self,
        spec: GroupSpec,
        train: Callable[[str, int | None, bool], Awaitable[GroupRecord]],
        poke: Callable[[], None],
    ) -> None:
        """``train(group, version, series_wait)`` runs one retrain (a Ray task) and returns
        its record (``series_wait``: the group has no model, so its series wait for this
        one); ``poke`` wakes the coordinator's pump (a first model is ready, or failed)."""
        self.spec = spec
        self._train = train
        self._poke = poke
        self.groups: dict[str, _Group] = {}

    def restore(self, records: dict[str, GroupRecord]) -> None:
        """The models MLflow holds (after a restart): used until they are due again."""
        for group, record in records.items():
            self.groups.setdefault(group, _Group()).record = record

    def group_of(self, job: Job) -> str:
        return self.spec.group_of(job.store_id)

    def ready(self, job: Job) -> bool:
        """Whether ``job`` may start: its group has a model, or cannot have one now. A group
        without a model starts training here; its jobs wait for it."""
        if not self.spec.enabled:
            return True
        state = self.groups.setdefault(self.group_of(job), _Group())
        if state.record is not None:
            return True
        if state.busy:
            # A first model that takes too long does not hold the series back for good.
            return time.time() - state.started_at > self.spec.wait_seconds
        if state.error is not None and time.time() < state.retry_at:
            return True  # failed lately: the series go on with their own families
        self._start(self.group_of(job), job.version)
        return False

    def record(self, job: Job) -> GroupRecord | str | None:
        """The group's model for ``job``, or why it has none (None: groups are off)."""
        if not self.spec.enabled:
            return None
        state = self.groups.get(self.group_of(job))
        if state is not None and state.record is not None:
            return state.record
        error = state.error if state is not None else None
        return f"group model {self.group_of(job)}: none yet ({error or 'not trained'})"

    def seen(self, job: Job, through: date | None, broken: str | None = None) -> None:
        """A series of the group was forecast from data through ``through``: retrain the
        group if it is due (in the background), or at once if its model could not be used
        (``broken``: why)."""
        if not self.spec.enabled:
            return
        group = self.group_of(job)
        state = self.groups.setdefault(group, _Group())
        if broken is not None and state.record is not None and not state.busy:
            log.warning("group model %s is broken (%s); retraining it", group, broken)
            state.record = None
            self._start(group, None)
            return
        if job.reason == "drift":
            state.drifted += 1
        if through is not None and (state.newest is None or through > state.newest):
            state.newest = through
        if state.record is None or state.busy or time.time() < state.retry_at:
            return
        record = state.record
        due = (
            (
                state.newest is not None
                and (state.newest - record.through).days >= self.spec.retrain_days
            )
            or time.time() - record.trained_at >= self.spec.retrain_hours * 3600
            or state.drifted >= self.spec.drift_series
        )
        if due:
            self._start(group, None)

    def progress(self, group: str, text: str) -> None:
        state = self.groups.get(group)
        if state is not None and state.busy:  # news from a retrain that ended is stale
            state.progress = text

    def _start(self, group: str, version: int | None) -> None:
        state = self.groups.setdefault(group, _Group())
        state.started_at = time.time()
        state.progress = "waiting for its CPUs"
        state.training = asyncio.get_running_loop().create_task(self._run(group, version))

    async def _run(self, group: str, version: int | None) -> None:
        state = self.groups[group]
        began = time.time()
        try:
            record = await self._train(group, version, state.record is None)
        except Exception as exc:
            state.error = f"{type(exc).__name__}: {exc}"
            state.retry_at = time.time() + state.retry_seconds
            state.retry_seconds = min(state.retry_seconds * 2, _MAX_RETRY_SECONDS)
            log.warning(
                "group model %s failed after %.1f s (%s); retried in %.0f s, its series use "
                "their own models meanwhile",
                group,
                time.time() - began,
                state.error,
                state.retry_at - time.time(),
            )
        else:
            state.record, state.error, state.drifted = record, None, 0
            state.seconds = time.time() - began
            state.retry_seconds = _FIRST_RETRY_SECONDS
            log.info(
                "group model %s v%d trained in %.1f s (%d series through %s)",
                group,
                record.version,
                time.time() - began,
                record.series,
                record.through,
            )
        finally:
            self._poke()

    def status(self) -> dict[str, Any]:
        return {
            group: {
                "version": state.record.version if state.record else None,
                "through": state.record.through.isoformat() if state.record else None,
                "series": state.record.series if state.record else None,
                "validation_mae": state.record.score if state.record else None,
                "training": state.busy,
                # While it trains: for how long, and the step it said last.
                "training_seconds": time.time() - state.started_at if state.busy else None,
                "progress": state.progress,  # its last retrain's last step, once done
                "train_seconds": state.seconds,
                "error": state.error,
            }
            for group, state in sorted(self.groups.items())
        }
