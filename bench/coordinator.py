"""Series per second that the coordinator dispatches and publishes, with tasks that do no work.

Every series goes the whole way a real one does, except the retrain itself: queued, handed to
a Ray task (which reports its start to the coordinator and returns a 28-day forecast at once),
published to the real embedded Apache Kafka, acknowledged by delivery, and reported as news.
The baseline, in the same process, is the bare ceiling: this driver starting the same tasks
itself (as many in flight, a task per series) and producing their forecasts with one
producer. Then 1, 2 and 4 coordinator shards, each with tasks of one series and of
``--batch-size`` series (the setting's default). On a 2-core machine the shards, the tasks,
Ray and Kafka share the same cores: the coordinator's own CPU per series (its process time
over the series it published) is the figure that extrapolates to a cluster; wall series/s
here is a floor.

    python -m bench.coordinator [--series 3000] [--cpus 8] [--shards 1 2 4] [--batch-size 32]
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.stack import embedded_stack
from retrain.cluster.batches import Batch
from retrain.cluster.queue import Job
from retrain.cluster.task import TaskResult, TaskSpec, series_row
from retrain.kernel.fallback import SeriesFit
from shelfcast.kafka import ensure_topics
from shelfcast.retrain_config import retrain_config, task_spec
from shelfcast.settings import Settings

THROUGH = date(2024, 6, 30)
POINTS = [
    {
        "date": (THROUGH + timedelta(days=d + 1)).isoformat(),
        "yhat": 10.0 + d % 7,
        "yhat_lower": 6.0,
        "yhat_upper": 15.0,
    }
    for d in range(28)
]


def idle_job(
    job: Job, spec: TaskSpec, reporter: Any = None, wave_run: Any = None, group: Any = None
) -> TaskResult:
    """What a series' retrain hands back, without loading, fitting or recording anything."""
    if reporter is not None:
        reporter.started.remote(job.key, os.getpid())
    fit = SeriesFit("tuned", THROUGH, POINTS, "", validation_mae=1.0, validation_mase=0.8)
    result = TaskResult(job, fit, os.getpid(), 0.0, 0.0, "bench-run", 1, 0.0)
    return dataclasses.replace(result, row=series_row(result))  # for the wave's table


def idle_batch(batch: Batch, spec: TaskSpec, reporter: Any = None) -> list[TaskResult]:
    """What ``run_batch`` hands back, without loading, fitting or recording anything."""
    if reporter is not None:
        reporter.started.remote(batch.id, os.getpid())
    return [idle_job(job, spec) for job in batch.jobs]


def keys(n: int, store: str = "S") -> list[tuple[str, str, float]]:
    return [(f"{store}{k // 100:04d}", f"I{k % 100:02d}", 0.0) for k in range(n)]


def run_wave(actors: list[Any], series: list[tuple[str, str, float]]) -> list[dict[str, Any]]:
    """Submit ``series`` split over the shards as one wave; its summaries once finished."""
    import ray

    from retrain.cluster.shards import split

    wave_id = uuid.uuid4().hex[:12]
    parts = split(series, len(actors))
    ray.get([a.submit.remote(p, 0, False, wave_id) for a, p in zip(actors, parts, strict=True)])
    while True:
        waves: list[dict[str, Any]] = ray.get([a.wave.remote(wave_id) for a in actors])
        if all(w["finished_at"] is not None for w in waves):
            return waves
        time.sleep(0.05)


def count_forecasts(settings: Settings, expect: int, timeout: float = 60.0) -> Counter[str]:
    """Forecast messages per series key on the run's topic (all of them, to catch doubles)."""
    from confluent_kafka import Consumer, TopicPartition

    from shelfcast.kafka import client_config

    consumer = Consumer({**client_config(settings), "group.id": f"bench-{uuid.uuid4().hex[:6]}"})
    topic = settings.topic_forecasts
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and (sum(seen.values()) < expect or quiet < 3):
        batch = consumer.consume(5000, 0.3)
        quiet = 0 if batch else quiet + 1
        for msg in batch:
            if msg.error() is None:
                seen[(msg.key() or b"").decode()] += 1
    consumer.close()
    return seen


def fresh(settings: Settings, shards: int, batch_size: int = 1) -> Settings:
    tag = uuid.uuid4().hex[:8]
    run = settings.model_copy(
        update={
            "ray_namespace": f"bench-{tag}",
            "topic_forecasts": f"fc-{tag}",
            "ray_coordinator_shards": shards,
            "retrain_batch_size": batch_size,
            "retrain_group_enabled": False,  # no group model to train for idle series
        }
    )
    ensure_topics(run)
    return run


def ceiling(settings: Settings, n: int, in_flight: int) -> dict[str, float]:
    """The driver runs the idle tasks itself and produces each forecast: no queue, no actor."""
    import ray

    from retrain.cluster.sinks import forecast_message
    from retrain.stores.publish import ForecastPublisher
    from shelfcast.kafka import producer_config

    run = fresh(settings, 1)
    task = ray.remote(num_cpus=1, max_retries=0)(idle_job)
    spec = task_spec(run)
    publisher = ForecastPublisher(producer_config(run), run.topic_forecasts)
    jobs = [Job(s, i, 0, "bench") for s, i, _ in keys(n)]
    cpu, began = time.process_time(), time.perf_counter()
    pending: list[Any] = []
    deliveries = []
    while jobs or pending:
        while jobs and len(pending) < in_flight:
            pending.append(task.remote(jobs.pop(), spec))
        ready, pending = ray.wait(pending, num_returns=1)
        for result in ray.get(ready):
            deliveries.append(publisher.send(forecast_message(result)))
    publisher.close()
    seconds = time.perf_counter() - began
    assert all(d.done and d.error is None for d in deliveries)
    counted = count_forecasts(run, n)
    assert len(counted) == n and set(counted.values()) == {1}, "ceiling: not one forecast each"
    return {"series_s": n / seconds, "cpu_ms": 1000 * (time.process_time() - cpu) / n}


def sharded(settings: Settings, n: int, shards: int, batch_size: int = 1) -> dict[str, float]:
    """One wave of ``n`` idle series through ``shards`` coordinators, ``batch_size`` a task."""
    import ray

    from retrain.cluster.client import coordinator

    run = fresh(settings, shards, batch_size)
    config = retrain_config(run)
    actors = [coordinator(config, shard=s, task=idle_batch) for s in range(shards)]
    # Each coordinator's first wave opens MLflow and the producer (seconds, once): not timed.
    warm = 50 * shards
    run_wave(actors, keys(warm, "W"))
    before = ray.get([a.status.remote() for a in actors])
    waves = run_wave(actors, keys(n))
    # The actors' own clock: from the first submission taken to the last series published.
    seconds = max(w["finished_at"] for w in waves) - min(w["started_at"] for w in waves)
    after = ray.get([a.status.remote() for a in actors])
    done = sum(w["done"] for w in waves)
    if done != n:
        errors = {
            k: p["error"] for a in actors for k, p in ray.get(a.status.remote())["poisoned"].items()
        }
        raise AssertionError(f"{shards} shards: {done} of {n} series done: {errors}"[:2000])
    counted = count_forecasts(run, n + warm)
    assert len(counted) == n + warm and set(counted.values()) == {1}, "not one forecast each"
    cpu = [b2["cpu_seconds"] - b1["cpu_seconds"] for b1, b2 in zip(before, after, strict=True)]
    for actor in actors:
        ray.kill(actor)
    return {
        "series_s": n / seconds,
        "cpu_ms": 1000 * sum(cpu) / n,  # coordinator CPU per series, all shards together
        "shard_cpu_s": max(cpu),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=3000)
    parser.add_argument("--cpus", type=int, default=8, help="logical CPUs of the Ray head")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch-size", type=int, default=Settings().retrain_batch_size)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_stack(Path(tmp), metrics_port=0, ray_num_cpus=args.cpus) as settings,
    ):
        print(f"warm-up: {args.cpus} Ray workers, MLflow store, topics", file=sys.stderr)
        sharded(settings, 200, 1)
        base = ceiling(settings, args.series, args.cpus)
        print(f"ceiling: {base['series_s']:.0f} series/s", file=sys.stderr)
        rows = []
        for shards in args.shards:
            for size in dict.fromkeys((1, args.batch_size)):
                found = sharded(settings, args.series, shards, size)
                print(
                    f"{shards} shard(s), {size} a task: {found['series_s']:.0f} series/s",
                    file=sys.stderr,
                )
                rows.append((shards, size, found))

    print(
        f"\ncoordinator, {args.series} idle series per run, {args.cpus} logical CPUs "
        f"({os.cpu_count()} cores shared by everything)"
    )
    print(f"  ceiling (driver + Ray tasks + one producer): {base['series_s']:.0f} series/s")
    one = rows[0][2]["series_s"]
    for shards, size, found in rows:
        print(
            f"  {shards} shard(s), {size} series a task: {found['series_s']:.0f} series/s "
            f"({found['series_s'] / base['series_s']:.2f}x ceiling, "
            f"{found['series_s'] / one:.2f}x one shard of one); coordinator CPU "
            f"{found['cpu_ms']:.2f} ms per series (-> {1000 / found['cpu_ms']:.0f} series/s "
            "per coordinator core)"
        )


if __name__ == "__main__":
    main()
