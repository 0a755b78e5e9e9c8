"""Series run in batches: one Ray task retrains several series of a store or group in turn.

A Ray task per series cost more than a forecast from the cached group model: the
coordinator's submission and result (~2.5 ms of its CPU, the largest share of it in a
profile), and in the task a read of the series' store, its plans and the store table, and a
prediction call of the group model for one series. In a batch the series share all of these.

A batch holds about ``batch_seconds`` of series by their recent mean (:class:`Pace`), at
most ``batch_size``: cheap series go many to a task, slow ones one each (a batch of those
would gain nothing), and a node that joins mid-wave still finds series queued. Within that,
a batch is as large as keeps every free slot busy: a lone due series starts alone at once.
Pure logic: no Ray here.
"""

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from retrain.cluster.outages import error_text, outage_of
from retrain.cluster.queue import Job
from retrain.errors import InfrastructureError, RetrainError
from retrain.stores.registry import GroupRecord

__all__ = [
    "HEARTBEAT_SECONDS",
    "Batch",
    "Beat",
    "Pace",
    "TaskFailure",
    "overrun",
    "plan_batches",
]

# How often a running task tells the coordinator it is alive, the CPU it has used and the
# series it is on.
HEARTBEAT_SECONDS = 5.0
# A task silent for this many heartbeats has stopped answering.
SILENT_BEATS = 3
# A series over its limit that used less CPU than this share of it mostly waited.
BUSY_SHARE = 0.5


@dataclass(frozen=True)
class Batch:
    """The series one task retrains in turn, each with its wave's MLflow run and its group's
    model (or why it has none; None: group models are off)."""

    id: str
    jobs: tuple[Job, ...]
    wave_runs: dict[str, str] = field(default_factory=dict)  # by wave id
    groups: tuple[GroupRecord | str | None, ...] = ()

    @property
    def keys(self) -> list[str]:
        return [job.key for job in self.jobs]

    def group(self, index: int) -> GroupRecord | str | None:
        return self.groups[index] if index < len(self.groups) else None


@dataclass(frozen=True)
class TaskFailure:
    """One series of a batch that failed: its error, and the system whose outage it was
    (None: the series' own failure)."""

    error: str
    outage: str | None = None


class Pace:
    """How many series a task takes: ``seconds`` of them by the mean of their recent task
    times, at most ``largest``, and one until the first has finished."""

    def __init__(self, seconds: float, largest: int, weight: float = 0.1) -> None:
        self.seconds, self.largest, self.weight = seconds, largest, weight
        self.mean: float | None = None

    def took(self, seconds: float) -> None:
        """A series' task time (an exponentially weighted mean: it follows a changing mix)."""
        if self.mean is None:
            self.mean = seconds
        else:
            self.mean += self.weight * (seconds - self.mean)

    def size(self) -> int:
        if self.mean is None:
            return 1
        return max(1, min(self.largest, int(self.seconds / max(self.mean, 1e-4))))


def plan_batches(
    jobs: Sequence[Job], slots: int, size: int, affinity: Callable[[Job], Hashable]
) -> list[list[Job]]:
    """``jobs`` (taken for ``slots`` free task slots) in at most ``slots`` batches of at most
    ``size``, as even as they split, series of one ``affinity`` (store, group) side by side so
    that they share their reads."""
    if not jobs:
        return []
    per = max(1, min(size, math.ceil(len(jobs) / max(1, slots))))
    # A stable sort: within a store or group, the queue's order (priority first) stays.
    ordered = sorted(jobs, key=lambda job: str(affinity(job)))
    return [list(ordered[i : i + per]) for i in range(0, len(ordered), per)]


@dataclass
class Beat:
    """What a running task last said: its process, when it started, its CPU seconds, and the
    series it is on, since when (the coordinator's clock) and from how many CPU seconds."""

    pid: int
    first: float  # time.monotonic() of its start
    at: float  # of its last heartbeat
    cpu: float = 0.0
    current: str | None = None
    since: float = 0.0
    cpu_at: float = 0.0

    def heard(self, cpu: float, current: str | None, now: float) -> None:
        """A heartbeat: ``cpu`` seconds used, on series ``current``. The first series named
        counts from the task's start; a later one from this beat (a beat's period late at
        most)."""
        if current != self.current:
            if self.current is not None:
                self.since, self.cpu_at = now, self.cpu
            self.current = current
        self.at, self.cpu = now, cpu


def overrun(batch: Batch, beat: Beat | None, limit: float, now: float) -> list[TaskFailure]:
    """The outcomes of a batch stopped because a series ran over ``limit``: that series'
    failure is its own only when it computed; the batch's others are retried, not counted."""
    held = beat.current if beat is not None and beat.current else batch.jobs[0].key
    error = _overrun_error(held, beat, limit, now)
    own = TaskFailure(error_text(error), outage_of(error))
    mate = TaskFailure(
        f"The retrain of a series was stopped with its batch, whose series {held} ran over "
        f"{limit:g} s. It is retried, and does not count against the series.",
        "stopped batch",
    )
    return [own if job.key == held else mate for job in batch.jobs]


def _overrun_error(key: str, beat: Beat | None, limit: float, now: float) -> RetrainError:
    again = "It is retried, and does not count against the series."
    if beat is None:
        return InfrastructureError(
            f"The retrain of {key} did not start within {limit:g} s: Ray had no worker "
            f"for it. {again}",
            "Ray",
        )
    silent = now - beat.at
    if silent > SILENT_BEATS * HEARTBEAT_SECONDS:
        return InfrastructureError(
            f"The retrain of {key} ran over {limit:g} s and was stopped: its worker (pid "
            f"{beat.pid}) had not answered for {silent:.0f} s (hung, stopped, or its node "
            f"lost). {again}",
            "Ray",
        )
    cpu = beat.cpu - beat.cpu_at
    if cpu < BUSY_SHARE * limit:
        return InfrastructureError(
            f"The retrain of {key} ran over {limit:g} s and was stopped having used "
            f"{cpu:.0f} CPU-s: it waited (on a store, a lock, or an overloaded node) "
            f"more than it computed. {again}",
            "stalled task",
        )
    return RetrainError(
        f"The retrain of {key} ran over {limit:g} s and was stopped ({cpu:.0f} CPU-s); "
        "it is retried. If its series is just slow, raise "
        "SHELFCAST_RETRAIN_TASK_TIMEOUT_SECONDS."
    )
