"""The coordinator: a named, detached Ray actor that owns the retrain queue.

It outlives the drivers that submit to it (the streaming service, ``shelfcast retrain``), so
a restarted driver reconnects by name and finds the queue as it was. ``submit`` only records
work and returns; a pump inside the actor starts Ray tasks, at most one per CPU of the
cluster, each retraining a :mod:`batch <retrain.cluster.batches>` of series in turn (about
``batch_seconds`` of them, at most ``batch_size``). Each task records a series with a model of
its own in MLflow (a run under the wave's, which the coordinator opens and closes); every
series' row goes to its wave's series table, which the coordinator stores in parts. The
coordinator publishes the forecast. A series is done once Kafka confirmed delivery. MLflow's
wave runs and tables, the producer and its Delta reads are its
:mod:`sinks <retrain.cluster.sinks>`.

A failure counts toward the series' poison only when it is the series' own: an outage of
MLflow, the Optuna storage, Delta, Ray or Kafka (:mod:`retrain.cluster.outages`) is retried
until the system returns. So is a series that ran over its time limit without being the
cause: its task's heartbeat stopped (its worker hung, was stopped or lost), or it used under
half its time in CPU (it waited on a store, a lock, an overloaded node). The limit counts for
each series of a batch from its start, which the heartbeat names; a series stopped with its
batch because another ran over is retried and not counted.
"""

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import ray

from retrain.cluster.batches import Batch, Beat, Pace, TaskFailure, overrun, plan_batches
from retrain.cluster.groups import GroupProgress, GroupScheduler, group_task_cpus
from retrain.cluster.identity import retrain_identity
from retrain.cluster.outages import error_text, outage_of
from retrain.cluster.prewarm import prewarm
from retrain.cluster.queue import Job, Request, RetrainQueue
from retrain.cluster.recovery import busy_series
from retrain.cluster.sinks import Sinks, forecast_message
from retrain.cluster.task import TaskResult, run_batch
from retrain.config import CoordinatorConfig
from retrain.errors import RetrainError
from retrain.group.train import train_group
from retrain.stores.registry import GroupRecord

__all__ = ["Coordinator"]

log = logging.getLogger("shelfcast.coordinator")

_train = ray.remote(num_cpus=1, max_retries=0)(run_batch)


def _node_cpus() -> list[float]:
    """The CPUs of each live node of the cluster (none when Ray cannot tell)."""
    try:
        nodes = ray.nodes()  # type: ignore[no-untyped-call]
    except Exception as exc:  # the GCS is away: the group asks for what it was given
        log.warning("the cluster's nodes are unknown (%s)", exc)
        return []
    return [float(n["Resources"].get("CPU", 0.0)) for n in nodes if n.get("Alive")]


class Coordinator:
    """Use through :mod:`retrain.cluster.client`; every public method is a Ray actor call."""

    def __init__(
        self, config: CoordinatorConfig, shard: int = 0, shards: int = 1, task: Any = None
    ) -> None:
        """``shard`` of ``shards``; ``task`` replaces the retrain task (a function like
        :func:`retrain.cluster.task.run_batch`: benchmarks run one that does no work)."""
        self.config = config
        self.shard = shard
        self.shards = max(1, shards)
        policy = config.policy
        # Numbered from the clock: news of a coordinator that replaces a lost one (Ray
        # restarts it) is numbered above its predecessor's.
        self.queue = RetrainQueue(
            policy.max_attempts,
            policy.backoff_seconds,
            int(time.time() * 1e6),
            policy.outage_max_seconds,
        )
        self._task = _train if task is None else ray.remote(num_cpus=1, max_retries=0)(task)
        self.sinks = Sinks(config)
        self._wake: asyncio.Event | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by batch
        self._batch_of: dict[str, str] = {}  # the batch each running series is in
        self._pace = Pace(config.batch_seconds, config.batch_size)
        # Series whose whole batch failed (its worker crashed, say): each runs alone next,
        # so that one series' crash does not keep taking its store's others down.
        self._alone: set[str] = set()
        self._capacity = (0, 0.0)
        self._wave_methods: dict[str, Counter[str]] = {}
        self._recent: deque[tuple[float, float]] = deque(maxlen=10_000)
        self._latest: deque[dict[str, Any]] = deque(maxlen=20)
        self._beats: dict[str, Beat] = {}
        self.published = 0
        self._rebuilt = False
        self._spec_ref: Any = None
        self._me: Any = None  # this actor's own handle, which tasks report to
        self._closing = self._close_again = False
        self.groups = GroupScheduler(config.task.groups, self._train_group, self._poke)

    # calls ----------------------------------------------------------------------------------

    async def submit(
        self,
        requests: list[tuple[Any, ...]],
        version: int,
        cold: bool = False,
        wave_id: str | None = None,
    ) -> dict[str, Any]:
        """Queue ``(store_id, item_id, priority[, data[, reason[, served]]])`` at ``version``;
        returns at once.

        ``data`` is the series' stored events: a poisoned series is skipped until it grows.
        ``reason`` says why it is due (``sales``, ``plan``, ``drift``, ``manual``): a series
        due for its plans only re-predicts. ``served`` is the model version of its last
        served forecast: its next one's is higher."""
        self._ensure_pump()
        wave_id = wave_id or uuid.uuid4().hex[:12]
        reqs = [
            Request(
                r[0],
                r[1],
                float(r[2]),
                None if len(r) < 4 or r[3] is None else int(r[3]),
                str(r[4]) if len(r) > 4 and r[4] else "sales",
                None if len(r) < 6 or r[5] is None else int(r[5]),
            )
            for r in requests
        ]
        wave = self.queue.submit(reqs, version, wave_id, time.time(), cold=cold)
        self._wave_methods.setdefault(wave_id, Counter())
        self._poke()
        return wave.summary()

    async def wave(self, wave_id: str, since: int | None = None) -> dict[str, Any] | None:
        """The wave's summary (None: not known here, e.g. this coordinator replaced the one
        it was submitted to); with ``since``, also the keys finished after the first
        ``since`` of them."""
        found = self.queue.waves.get(wave_id)
        if found is None:
            return None
        out = {**found.summary(), "methods": dict(self._wave_methods.get(wave_id, {}))}
        if since is not None:
            out["finished_keys"] = found.finished[since:]
        return out

    async def drain_updates(self) -> list[dict[str, Any]]:
        return self.queue.drain_updates()

    async def peek_updates(self, limit: int = 10_000, after: int = 0) -> list[dict[str, Any]]:
        self._ensure_pump()  # a restarted coordinator's rebuilt queue starts at the first call
        return self.queue.peek_updates(limit, after)

    async def ack_updates(self, seq: int) -> None:
        self.queue.ack_updates(seq)

    async def status(self) -> dict[str, Any]:
        now = time.time()
        minute = [s for t, s in self._recent if t >= now - 60]
        return {
            **self.queue.depth(),
            "capacity": self._cpus(),
            "batch_size": self._pace.size(),  # series a task takes now
            "retrains_last_minute": len(minute),
            "mean_retrain_seconds": sum(minute) / len(minute) if minute else None,
            "published": self.published,
            "cpu_seconds": time.process_time(),  # this actor's process, for its load
            "node_id": ray.get_runtime_context().get_node_id(),
            "shard": self.shard,
            "poisoned": {
                k: {"version": p.version, "data": p.data, "error": p.error}
                for k, p in self.queue.poison.items()
            },
            # Systems that failed, with the series waiting for them (none count as failures).
            "outages": self.queue.outage_summary(),
            "latest": list(self._latest),
            "groups": self.groups.status(),
        }

    async def group_progress(self, group: str, text: str) -> None:
        """What the retrain of ``group`` is doing now (``GroupProgress``)."""
        self.groups.progress(group, text)

    async def started(self, key: str, pid: int) -> None:
        """The task of batch ``key`` started in process ``pid``."""
        now = time.monotonic()
        self._beats[key] = Beat(pid, now, now, since=now)

    async def beat(self, key: str, pid: int, cpu: float, current: str | None = None) -> None:
        """The heartbeat of batch ``key``'s task: alive, having used ``cpu`` seconds, on
        series ``current``."""
        beat = self._beats.get(key)
        if beat is not None and beat.pid == pid:  # not a late beat of an earlier attempt
            beat.heard(cpu, current, time.monotonic())

    async def running_pids(self) -> dict[str, int]:
        """The process running each series (of its batch's task) that has started."""
        out = {}
        for key, batch in self._batch_of.items():
            beat = self._beats.get(batch)
            if beat is not None and key in self.queue.running:
                out[key] = beat.pid
        return out

    async def identity(self) -> dict[str, str]:
        """The retrain settings in use, for a driver to compare with its own."""
        return retrain_identity(self.config, self.shards)

    async def configure(self, config: CoordinatorConfig) -> None:
        """Take a (re)connecting driver's configuration; the queue and its state stay."""
        if config == self.config:
            return
        self.config = config
        self._spec_ref = None
        self._pace.seconds, self._pace.largest = config.batch_seconds, config.batch_size
        self.queue.max_attempts = config.policy.max_attempts
        self.queue.backoff_seconds = config.policy.backoff_seconds
        self.queue.outage_max_seconds = config.policy.outage_max_seconds
        # MLflow is opened again at its next use, the producer at once, with the new addresses.
        self.sinks.reconfigure(config)

    async def ping(self) -> str:
        self._ensure_pump()
        return "ok"

    # pump -----------------------------------------------------------------------------------

    def _ensure_pump(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._run())

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _cpus(self) -> int:
        count, checked = self._capacity
        if time.monotonic() - checked > 2 or count == 0:
            cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
            # Each shard runs its share of the cluster's CPUs (its series spread evenly).
            count = max(1, round(cpus / self.shards))
            self._capacity = (count, time.monotonic())
        return count

    async def _run(self) -> None:
        assert self._wake is not None
        # Meanwhile the workers start and import what a retrain needs (retrain/cluster/prewarm.py).
        self._warming = prewarm(self._cpus())
        # Before any task starts: a task's fallback reads MLflow too, and a fresh SQLite store
        # built here once is not built again, side by side, by every worker.
        try:
            await self.sinks.ready()
        except Exception as exc:
            log.warning("MLflow or Kafka not ready (%s); results will retry them", exc)
        if self.groups.spec.enabled:
            try:
                self.groups.restore(await self.sinks.group_champions())
            except Exception as exc:
                log.warning("group models not read from MLflow (%s); they are retrained", exc)
        await self._rebuild()
        while True:
            self._wake.clear()
            now = time.time()
            held = False

            def ready(job: Job) -> bool:
                nonlocal held
                found = self.groups.ready(job)
                held = held or not found
                return found

            free = self._cpus() - len(self._tasks)
            size = self._pace.size()
            taken = self.queue.take(now, free * size, ready) if free > 0 else []
            alone = [[job] for job in taken if job.key in self._alone]
            rest = [job for job in taken if job.key not in self._alone]
            slots = max(1, free - len(alone))
            for jobs in alone + plan_batches(rest, slots, size, self._affinity):
                batch = uuid.uuid4().hex[:12]
                self._batch_of.update((job.key, batch) for job in jobs)
                self._tasks[batch] = asyncio.get_running_loop().create_task(
                    self._execute(batch, jobs)
                )
            # Every slot busy: a finished task wakes the pump (no spinning on a full queue);
            # jobs held for their group's first model: its training wakes it.
            full = len(self._tasks) >= self._cpus()
            due = None if full or held else self.queue.next_due(now)
            timeout = 5.0 if due is None else min(5.0, max(due, 0.01))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _rebuild(self) -> None:
        """Submit again what ``series_state`` shows as queued or running: a new coordinator
        (the first, or one Ray restarted after its node died) may have lost them."""
        if self._rebuilt:
            return
        self._rebuilt = True
        found, version = await self.sinks.read(
            busy_series, self.config.delta_dir, self.shard, self.shards
        )
        held = self.queue.queued.keys() | self.queue.running.keys()
        requests = [r for r in found if r.key not in held]  # submitted meanwhile: held
        if requests:
            wave_id = f"rebuilt-{uuid.uuid4().hex[:8]}"
            wave = self.queue.submit(requests, version, wave_id, time.time())
            self._wave_methods.setdefault(wave.wave_id, Counter())
            log.warning(
                "series_state shows %d series queued or running that this coordinator did "
                "not hold; submitted again at daily_sales v%d",
                len(requests),
                version,
            )

    def _affinity(self, job: Job) -> tuple[str, str]:
        """Series of one group and store share a batch's reads."""
        return self.groups.group_of(job), job.store_id

    async def _execute(self, batch_id: str, jobs: list[Job]) -> None:
        if self._me is None:  # a handle built per series cost ~5 % of this actor's CPU
            self._me = ray.get_runtime_context().current_actor
        wave_runs: dict[str, str] = {}
        try:
            try:
                for wave_id in dict.fromkeys(job.wave_id for job in jobs):
                    wave_runs[wave_id] = await self.sinks.wave_run(wave_id)
                groups = tuple(self.groups.record(job) for job in jobs)
                batch = Batch(batch_id, tuple(jobs), wave_runs, groups)
                outcomes = await self._train(batch, self._me)
                if len(outcomes) != len(jobs):
                    raise RetrainError(
                        f"The retrain task returned {len(outcomes)} outcomes for {len(jobs)} "
                        "series; they are retried one to a task."
                    )
            except Exception as exc:  # the whole task: its worker, Ray, MLflow's wave run
                outcomes = [TaskFailure(error_text(exc), outage_of(exc))] * len(jobs)
                if len(jobs) > 1:
                    self._alone.update(job.key for job in jobs)
            else:
                self._alone.difference_update(job.key for job in jobs)
            await asyncio.gather(
                *(
                    self._settle(job, outcome, wave_runs.get(job.wave_id, ""))
                    for job, outcome in zip(jobs, outcomes, strict=True)
                )
            )
        finally:
            self._tasks.pop(batch_id, None)
            self._beats.pop(batch_id, None)
            for job in jobs:
                if self._batch_of.get(job.key) == batch_id:
                    del self._batch_of[job.key]
            self._poke()
            await self._close_finished_waves()

    async def _settle(self, job: Job, outcome: TaskResult | TaskFailure, wave_run: str) -> None:
        """One series of a finished batch: its failure recorded, or its forecast published."""
        if isinstance(outcome, TaskFailure):
            error = self.sinks.redacted(outcome.error)
            verdict = self.queue.fail(job.key, error, time.time(), outcome.outage)
            log.warning("retrain of %s failed (%s): %s", job.key, verdict, error)
            return
        result = outcome
        self.groups.seen(job, result.fit.data_through, broken=result.group_error)
        delivering = time.perf_counter()
        message = await self._deliver(result)
        stages = {**result.stages, "publish": time.perf_counter() - delivering}
        try:
            self.sinks.add_row(wave_run, result.row)
        except Exception as exc:  # its MLflow row only: the forecast is out
            log.warning("the series table row of %s not kept: %s", job.key, exc)
        fit = result.fit
        self._recent.append((time.time(), result.seconds))
        self._pace.took(result.seconds)
        method = "warm" if fit.warm else fit.method
        self._wave_methods.setdefault(job.wave_id, Counter())[method] += 1
        self.queue.succeed(
            job.key,
            time.time(),
            method=fit.method,
            model_version=str(result.model_version),
            error=fit.fallback_reason,
            seconds=result.seconds,
            fit_seconds=fit.fit_seconds,
            record_seconds=result.record_seconds,
            warm=fit.warm,
            forecast=message,
            mase_scale=fit.mase_scale,
            node=result.node_id,
            stages=stages,
        )

    async def _deliver(self, result: TaskResult) -> dict[str, Any]:
        """Publish the task's forecast and return it once Kafka confirmed it."""
        forecast = forecast_message(result)
        await self.sinks.deliver(forecast, lambda note: self.queue.report(forecast.key, note))
        self.published += 1
        self._latest.appendleft(
            {
                "series": forecast.key,
                "model_version": forecast.model_version,
                "method": forecast.method,
                "warm": forecast.warm,
                "validation_mase": forecast.validation_mase,
                "seconds": round(result.seconds, 3),
                "at": forecast.generated_at.isoformat(),
            }
        )
        return forecast.model_dump(mode="json")

    async def _train(self, batch: Batch, me: Any) -> Sequence[TaskResult | TaskFailure]:
        """Run the batch's task; each series' outcome. A series that outlives the policy's
        timeout stops the task: it fails, and the batch's others are retried."""
        if self._spec_ref is None:
            self._spec_ref = ray.put(self.config.task)  # serialised once, not with every task
        ref = self._task.remote(batch, self._spec_ref, me)
        limit = self.config.policy.task_timeout_seconds
        submitted = time.monotonic()
        future = asyncio.wrap_future(ref.future())
        while True:
            # The limit counts from the series' start: waiting for a CPU is not running.
            beat = self._beats.get(batch.id)
            left = (beat.since if beat is not None else submitted) + limit - time.monotonic()
            if left <= 0:
                break
            done, _ = await asyncio.wait({future}, timeout=left)
            if done:
                break
        if future.done():  # finished as its limit came: its outcomes stand
            outcomes: list[TaskResult | TaskFailure] = future.result()
            return outcomes
        # force: a hung task never reaches a cancellation point; its worker is killed.
        ray.cancel(ref, force=True)
        return overrun(batch, self._beats.get(batch.id), limit, time.monotonic())

    async def _close_finished_waves(self) -> None:
        """Close the MLflow runs of finished waves (one closer at a time: a slow MLflow never
        holds a finished task)."""
        self._close_again = True
        if self._closing:
            return
        self._closing = True
        try:
            while self._close_again:
                self._close_again = False
                await self._close_waves()
        finally:
            self._closing = False

    async def _close_waves(self) -> None:
        for wave_id in [w for w in self._wave_methods if w not in self.queue.waves]:
            del self._wave_methods[wave_id]
        for wave_id in self.sinks.open_waves:
            wave = self.queue.waves.get(wave_id)
            if wave is None or wave.finished_at is None:
                continue
            methods = self._wave_methods.get(wave_id, Counter())
            totals = {
                "series": wave.total,
                "done": wave.done,
                "failed": wave.failed,
                "skipped": wave.skipped,
                "seconds": wave.finished_at - wave.started_at,
                **{f"n_{name}": count for name, count in methods.items()},
            }
            await self.sinks.finish_wave(wave_id, totals)

    async def _train_group(self, group: str, version: int | None, series_wait: bool) -> GroupRecord:
        """One group retrain as a Ray task of the group's own CPUs (``group_task_cpus``);
        stopped at its timeout."""
        spec = self.config.task
        asked = spec.groups.cpus
        cpus = group_task_cpus(asked, _node_cpus(), series_wait)
        if cpus != asked:
            log.warning(
                "group model %s trains on %d CPU(s), not the %d asked: a task runs on one "
                "node, and a retrain leaves the wave's series a CPU. Lower "
                "SHELFCAST_RETRAIN_GROUP_CPUS or add CPUs to the cluster's nodes.",
                group,
                cpus,
                asked,
            )
        groups = replace(spec.groups, cpus=cpus, tune=replace(spec.groups.tune, threads=cpus))
        remote = ray.remote(num_cpus=cpus, max_retries=0)(train_group)
        me = ray.get_runtime_context().current_actor
        # Ray's stubs type ray.remote(**options)(f) with four arguments at most.
        ref = remote.remote(  # type: ignore[call-arg]
            group, version, spec.group_stores(), groups, GroupProgress(me, group)
        )
        limit = spec.groups.timeout_seconds
        try:
            record: GroupRecord = await asyncio.wait_for(asyncio.wrap_future(ref.future()), limit)
        except TimeoutError:
            ray.cancel(ref, force=True)
            raise RetrainError(
                f"The group model {group} ran over {limit:g} s and was stopped. Split the "
                "group (SHELFCAST_RETRAIN_GROUP_BY=hash) or raise "
                "SHELFCAST_RETRAIN_GROUP_TIMEOUT_SECONDS."
            ) from None
        return record
