"""The retrain queue as pure state: coalescing, priority, retry with backoff, poison, waves.

No Ray here: the coordinator actor owns one instance and drives it with the clock.
- A series submitted while queued or running trains at most once more, on the newest version.
- ``take`` hands out the highest priority first (ties: oldest first), skipping backoffs.
- A failure retries after ``backoff * 2**(attempts-1)`` seconds; after ``max_attempts`` the series
  is poison at its own data (its stored events, ``Request.data``) and skipped until it has
  more. Every micro-batch makes a new ``daily_sales`` version, so the version alone barely
  held; it is the test only for submissions that do not say (``shelfcast retrain --series``).
- An outage (a failure of a system the series depends on, not of its model) never counts:
  the series retries after ``backoff * 2**(outages-1)`` seconds, at most ``outage_max_seconds``,
  for as long as the outage lasts, and is listed in :attr:`RetrainQueue.outages` meanwhile.
"""

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from contracts.series import parse_series_key, series_key

__all__ = ["Job", "Outage", "Poison", "Request", "RetrainQueue", "Wave"]

_KEEP_WAVES = 200
_KEEP_UPDATES = 100_000

QUEUED, RUNNING, DONE, FAILED, POISON = "queued", "running", "done", "failed", "poison"
OUTAGE = "outage"  # a failure that did not count: the series waits for the system to return
# The shortest retry delay after an outage (the policy's backoff may be 0).
_MIN_OUTAGE_DELAY = 0.5


@dataclass(frozen=True)
class Request:
    """One series to retrain; ``priority`` is e.g. its new events since the last retrain."""

    store_id: str
    item_id: str
    priority: float = 0.0
    data: int | None = None  # the series' stored events: changes only with its own data
    # Why it is due: "sales" (new data), "plan" (only its plans changed: re-predict, no
    # re-tuning), "drift", "forced" (an operator).
    reason: str = "sales"
    # The model version of its last served forecast, as the service saw it: the floor of
    # its next one.
    served: int | None = None

    @property
    def key(self) -> str:
        return series_key(self.store_id, self.item_id)


def merged_reason(old: str, new: str) -> str:
    """Coalesced reasons: new data wins over a plan change (the re-tune sees the plans too)."""
    if old == new:
        return new
    if "plan" in (old, new):
        return new if old == "plan" else old
    return new


@dataclass(frozen=True)
class Poison:
    """A series that failed ``max_attempts`` times, and the data it failed on."""

    version: int
    data: int | None
    error: str

    def holds(self, version: int, data: int | None) -> bool:
        """Whether a submission at ``version`` with ``data`` is still the data that failed."""
        if data is not None and self.data is not None:
            return data <= self.data
        return version <= self.version


@dataclass(frozen=True)
class Outage:
    """A series waiting for a system to return: which, since when, its last error."""

    system: str
    error: str
    since: float
    retries: int


@dataclass(frozen=True)
class Job:
    """A queued or running retrain of one series at one data version."""

    store_id: str
    item_id: str
    version: int
    wave_id: str
    priority: float = 0.0
    cold: bool = False
    attempts: int = 0
    not_before: float = 0.0
    seq: int = 0
    data: int | None = None
    reason: str = "sales"
    outages: int = 0  # failures in a row that were outages (they set its retry delay)
    served: int | None = None  # the floor of its forecast's model version (Request.served)

    @property
    def key(self) -> str:
        return series_key(self.store_id, self.item_id)


@dataclass
class Wave:
    """One submission's progress; a series coalesced into a later wave moves there."""

    wave_id: str
    started_at: float
    pending: set[str] = field(default_factory=set)
    done: int = 0
    failed: int = 0
    skipped: int = 0
    moved: int = 0
    finished_at: float | None = None
    finished: list[str] = field(default_factory=list)  # keys done or failed, in that order

    @property
    def total(self) -> int:
        return len(self.pending) + self.done + self.failed

    def summary(self) -> dict[str, Any]:
        return {
            "wave_id": self.wave_id,
            "total": self.total,
            "pending": len(self.pending),
            "done": self.done,
            "failed": self.failed,
            "skipped": self.skipped,
            "moved": self.moved,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class RetrainQueue:
    """Queued, running, poisoned series and the waves they belong to."""

    def __init__(
        self,
        max_attempts: int = 3,
        backoff_seconds: float = 2.0,
        seq_base: int = 0,
        outage_max_seconds: float = 30.0,
    ) -> None:
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.outage_max_seconds = outage_max_seconds
        self.outages: dict[str, Outage] = {}
        self.queued: dict[str, Job] = {}
        # Queued jobs by (priority, arrival), with stale entries skipped when popped: a take
        # costs log(n) per job, not a sort of the whole queue (which, once per finished
        # series, made a wave of n series cost n^2 log n).
        self._heap: list[tuple[float, int, int, Job]] = []
        self._pushes = 0
        self._backoff: set[str] = set()  # queued keys with a retry delay
        self.running: dict[str, Job] = {}
        self.rerun: dict[str, Job] = {}
        self.poison: dict[str, Poison] = {}
        self.waves: dict[str, Wave] = {}
        self.updates: list[dict[str, Any]] = []
        self._seq = 0
        # News is numbered from ``seq_base``: a queue that replaces a lost one (given a base
        # above anything the old one numbered, e.g. the clock in microseconds) never reuses a
        # number a driver may still acknowledge.
        self._update_seq = seq_base

    # submission -----------------------------------------------------------------------------

    def submit(
        self, requests: list[Request], version: int, wave_id: str, now: float, cold: bool = False
    ) -> Wave:
        """Queue (or coalesce) each series at ``version``; returns the new wave."""
        wave = self.waves.setdefault(wave_id, Wave(wave_id, now))
        self._prune()
        for req in requests:
            key = req.key
            poison = self.poison.get(key)
            if poison is not None and poison.holds(version, req.data):
                wave.skipped += 1
                # Said again, so that a driver that marked it queued sees it is not.
                self._note(key, POISON, version=poison.version, error=poison.error, skipped=True)
                continue
            self.poison.pop(key, None)
            self._seq += 1
            job = Job(
                req.store_id,
                req.item_id,
                version,
                wave_id,
                req.priority,
                cold,
                seq=self._seq,
                data=req.data,
                reason=req.reason,
                served=req.served,
            )
            if key in self.running:
                job = self._merge(self.rerun.get(key), job)
                self.rerun[key] = job
            else:
                job = self._merge(self.queued.get(key), job)
                self._enqueue(job)
                self._note(key, QUEUED, version=job.version)
            self._move(key, wave)
        self._maybe_finish(wave, now)
        return wave

    def _prune(self) -> None:
        finished = [w.wave_id for w in self.waves.values() if w.finished_at is not None]
        for wave_id in finished[: max(0, len(finished) - _KEEP_WAVES)]:
            del self.waves[wave_id]

    def _merge(self, old: Job | None, new: Job) -> Job:
        if old is None:
            return new
        return replace(
            new,
            version=max(old.version, new.version),
            priority=max(old.priority, new.priority),
            cold=old.cold or new.cold,
            seq=old.seq,
            data=new.data if old.data is None else max(old.data, new.data or 0),
            reason=merged_reason(old.reason, new.reason),
            served=max(old.served or 0, new.served or 0) or None,
        )

    def _enqueue(self, job: Job) -> None:
        self.queued[job.key] = job
        self._pushes += 1
        heapq.heappush(self._heap, (-job.priority, job.seq, self._pushes, job))
        if job.not_before > 0:
            self._backoff.add(job.key)
        else:
            self._backoff.discard(job.key)
        if len(self._heap) > 2 * len(self.queued) + 64:  # mostly stale: rebuild
            self._heap = [e for e in self._heap if self.queued.get(e[3].key) is e[3]]
            heapq.heapify(self._heap)

    def _move(self, key: str, wave: Wave) -> None:
        for other in self.waves.values():
            if other is not wave and key in other.pending:
                other.pending.discard(key)
                other.moved += 1
        wave.pending.add(key)

    # dispatch -------------------------------------------------------------------------------

    def take(self, now: float, slots: int, ready: Callable[[Job], bool] | None = None) -> list[Job]:
        """Up to ``slots`` jobs to start now; they become running. ``ready`` holds back the
        jobs it refuses (their group model is being trained first), keeping their place."""
        out: list[Job] = []
        later = []
        while slots > len(out) and self._heap:
            entry = heapq.heappop(self._heap)
            job = entry[3]
            if self.queued.get(job.key) is not job:
                continue  # replaced or taken since it was pushed
            if job.not_before > now or (ready is not None and not ready(job)):
                later.append(entry)
                continue
            out.append(job)
            del self.queued[job.key]
            self._backoff.discard(job.key)
            self.running[job.key] = job
            self._note(job.key, RUNNING, version=job.version, attempts=job.attempts)
        for entry in later:
            heapq.heappush(self._heap, entry)
        return out

    def next_due(self, now: float) -> float | None:
        """Seconds until the earliest backed-off job may start (0 if one may now)."""
        if not self.queued:
            return None
        if len(self.queued) > len(self._backoff):
            return 0.0  # a job without a retry delay waits
        return max(0.0, min(self.queued[k].not_before for k in self._backoff) - now)

    # outcomes -------------------------------------------------------------------------------

    def succeed(self, key: str, now: float, **info: Any) -> None:
        job = self.running.pop(key)
        self.outages.pop(key, None)
        self._note(key, DONE, **{"version": job.version, "error": None, **info})
        self._count(job, now, ok=True)
        self._requeue_rerun(key)

    def fail(self, key: str, error: str, now: float, outage: str | None = None) -> str:
        """Record a failure; returns ``queued`` (a retry is scheduled) or ``poison``.

        With ``outage`` (the system that failed), the failure is not the series': it does not
        count toward poison, and the series is retried after a bounded backoff (``outage``
        is returned)."""
        job = self.running.pop(key)
        newer = self.rerun.pop(key, None)
        if newer is not None:
            job = replace(newer, attempts=job.attempts, outages=job.outages)
        if outage is not None:
            return self._wait_out(job, error, now, outage)
        self.outages.pop(key, None)
        attempts = job.attempts + 1
        if attempts >= self.max_attempts:
            self.poison[key] = Poison(job.version, job.data, error)
            self._note(key, POISON, version=job.version, error=error, attempts=attempts)
            self._count(job, now, ok=False)
            return POISON
        delay = self.backoff_seconds * 2 ** (attempts - 1)
        self._enqueue(replace(job, attempts=attempts, not_before=now + delay))
        self._note(key, QUEUED, version=job.version, error=error, attempts=attempts)
        return QUEUED

    def _wait_out(self, job: Job, error: str, now: float, system: str) -> str:
        outages = job.outages + 1
        base = max(self.backoff_seconds, _MIN_OUTAGE_DELAY)
        delay = min(base * 2 ** min(outages - 1, 30), self.outage_max_seconds)
        self._enqueue(replace(job, outages=outages, not_before=now + delay))
        before = self.outages.get(job.key)
        self.outages[job.key] = Outage(
            system, error, before.since if before is not None else now, outages
        )
        self._note(
            job.key, QUEUED, version=job.version, error=error, attempts=job.attempts, outage=system
        )
        return OUTAGE

    def report(self, key: str, error: str) -> None:
        """Tell the driver about a running series' trouble (e.g. its forecast not sent yet)."""
        job = self.running.get(key)
        if job is not None:
            self._note(key, RUNNING, version=job.version, error=error, attempts=job.attempts)

    def _requeue_rerun(self, key: str) -> None:
        job = self.rerun.pop(key, None)
        if job is not None:
            self._enqueue(job)
            self._note(key, QUEUED, version=job.version)

    def _count(self, job: Job, now: float, ok: bool) -> None:
        for wave in self.waves.values():
            if job.key in wave.pending and (
                wave.wave_id == job.wave_id or job.key not in self.rerun
            ):
                wave.pending.discard(job.key)
                wave.finished.append(job.key)
                if ok:
                    wave.done += 1
                else:
                    wave.failed += 1
                self._maybe_finish(wave, now)
                break

    def _maybe_finish(self, wave: Wave, now: float) -> None:
        if not wave.pending and wave.finished_at is None:
            wave.finished_at = now

    # views ----------------------------------------------------------------------------------

    def _note(self, key: str, state: str, **info: Any) -> None:
        store_id, item_id = parse_series_key(key)
        self._update_seq += 1
        self.updates.append(
            {
                "seq": self._update_seq,
                "store_id": store_id,
                "item_id": item_id,
                "status": state,
                "at": time.time(),
                **info,
            }
        )
        if len(self.updates) > _KEEP_UPDATES:
            # Nobody drains (no service running): keep the newest; series_state catches up.
            del self.updates[: len(self.updates) - _KEEP_UPDATES]

    def drain_updates(self) -> list[dict[str, Any]]:
        """Status changes since the last drain, oldest first (the driver applies them)."""
        out, self.updates = self.updates, []
        return out

    def peek_updates(self, limit: int = 10_000, after: int = 0) -> list[dict[str, Any]]:
        """The oldest unacknowledged status changes (numbered above ``after``);
        ``ack_updates`` removes them once applied."""
        if after:
            return [u for u in self.updates if u["seq"] > after][:limit]
        return self.updates[:limit]

    def ack_updates(self, seq: int) -> None:
        """Forget the updates up to ``seq`` (the driver committed them)."""
        self.updates = [u for u in self.updates if u["seq"] > seq]

    def depth(self) -> dict[str, int]:
        return {
            "queued": len(self.queued),
            "running": len(self.running),
            "rerun": len(self.rerun),
            "poison": len(self.poison),
            "outage": len(self.outages),
        }

    def outage_summary(self) -> dict[str, dict[str, Any]]:
        """Per failed system: how many series wait for it, since when, the latest error."""
        out: dict[str, dict[str, Any]] = {}
        for key, o in self.outages.items():
            entry = out.setdefault(
                o.system, {"series": 0, "since": o.since, "error": o.error, "example": key}
            )
            entry["series"] += 1
            entry["since"] = min(entry["since"], o.since)
        return out
