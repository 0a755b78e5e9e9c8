"""Benchmark: event-to-forecast latency through the whole service.

One process runs the service (Spark query with a 1 s trigger, hand-off, Ray coordinator on a
fresh embedded head, MLflow, forecasts to Kafka). After a warm-up that gives every series
its first (cold) model, it measures, from the POS event's produce time to its series' new
forecast on the topic:
  single: one changed series at a time (each a different series, so no cooldown applies);
  wave:   one event for each of N series at once.
  plan:   one planned promotion at a time for one series (no sale): from the plan event's
          produce time to the series' re-predicted forecast.
The baseline, run in the same process on the same series, is the retrain alone: a wave
submitted straight to the coordinator, without Kafka, Spark or the trigger.

The series are synthetic by default; ``--data`` takes a sales file (``date,store,item,sales``)
instead, with its plans and store records beside it as in the Rossmann data
(``plans.csv.gz``, ``stores.csv``): its history through ``--history-days`` before its last
day goes through Kafka, the plans known then into the tables, and the sales after are sent.

    python -m bench.e2e [--series 100] [--singles 20] [--plans 20] [--data PATH]
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.stack import embedded_stack, write_plans
from bench.stats import pct
from contracts.series import parse_series_key, series_key
from retrain.kernel.plans import Plan, StoreInfo
from shelfcast.kafka import client_config, producer_config
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings
from streaming.thresholds import ThresholdStore

START = date(2024, 1, 1)
# The days a sales file keeps after the history: the single sales and the wave's day.
TAIL_DAYS = 28


class Watcher:
    """Follows the forecast topic; records when each (series, model version) arrived."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = Consumer(
            {**client_config(settings), "group.id": "bench-e2e", "fetch.wait.max.ms": 10}
        )
        topic = settings.topic_forecasts
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        self.versions: dict[str, int] = {}
        self.arrived: dict[str, float] = {}

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(500, 0.05):
                if msg.error() is None:
                    value = json.loads(msg.value() or b"{}")
                    key = series_key(value["store_id"], value["item_id"])
                    self.versions[key] = max(self.versions.get(key, 0), value["model_version"])
                    self.arrived[key] = time.time()

    def wait_new(
        self, keys: Iterable[str], after: dict[str, int], timeout: float
    ) -> dict[str, float]:
        pending = set(keys)
        out: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            self.poll(0.05)
            for key in list(pending):
                if self.versions.get(key, 0) > after.get(key, 0):
                    out[key] = self.arrived[key]
                    pending.discard(key)
        if pending:
            raise SystemExit(f"{len(pending)} series got no forecast within {timeout:.0f} s")
        return out


def send(producer: Producer, settings: Settings, events: list[dict[str, Any]]) -> float:
    for event in events:
        producer.produce(
            settings.topic_pos_sales,
            key=series_key(event["store_id"], event["item_id"]),
            value=json.dumps(event),
        )
    producer.flush(30)
    return time.time()


def send_plan(producer: Producer, settings: Settings, series: str, first: date, n: int) -> float:
    """A promotion of the series from ``first`` for five days (plan v1); its produce time."""
    store, item = parse_series_key(series)
    plan_id = f"bench-{series}-{n}"
    plan = {
        "plan_id": plan_id,
        "revision": 1,
        "store_id": store,
        "item_id": item,
        "start_date": first.isoformat(),
        "end_date": (first + timedelta(days=4)).isoformat(),
        "kind": "promotion",
        "depth": 0.2,
        "published_at": f"{START}T00:00:00+00:00",
    }
    producer.produce(settings.topic_pos_plans, key=plan_id, value=json.dumps(plan))
    producer.flush(30)
    return time.time()


def event(series: str, day: date, n: int, quantity: float) -> dict[str, Any]:
    store, item = parse_series_key(series)
    return {
        "event_id": f"{series}-{day}-{n}",
        "store_id": store,
        "item_id": item,
        "sold_at": f"{day}T12:00:00+00:00",
        "quantity": quantity,
    }


@dataclass
class RealData:
    """A sales file's series: the history sent as POS events, the plans known at its end."""

    frame: pd.DataFrame
    keys: list[str]
    next_day: date
    plans: tuple[dict[str, list[Plan]], dict[str, StoreInfo]] | None

    @classmethod
    def read(cls, path: Path, series: int, history_days: int) -> "RealData":
        from bench.retrain import choose, known_plans

        frame = choose(pd.read_csv(path, parse_dates=["date"]), series)
        through = frame["date"].max() - timedelta(days=TAIL_DAYS)
        frame = frame[frame["date"] > through - timedelta(days=history_days)]
        keys = sorted({series_key(str(s), str(i)) for s, i in frame[["store", "item"]].values})
        return cls(frame, keys, (through + timedelta(days=1)).date(), known_plans(path, through))

    def history(self) -> list[dict[str, Any]]:
        known = self.frame[self.frame["date"].dt.date < self.next_day]
        return [
            event(series_key(str(r.store), str(r.item)), r.date.date(), 0, float(r.sales))
            for r in known.itertuples()
        ]

    def sold(self, key: str, day: date) -> float:
        """The series' sales of ``day`` in the file (a day it was closed: one unit)."""
        store, item = parse_series_key(key)
        found = self.frame[
            (self.frame["store"].astype(str) == store)
            & (self.frame["item"].astype(str) == item)
            & (self.frame["date"].dt.date == day)
        ]
        return float(found["sales"].iloc[0]) if len(found) else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--singles", type=int, default=20)
    parser.add_argument("--plans", type=int, default=20)
    parser.add_argument("--history-days", type=int, default=150)
    parser.add_argument("--data", type=Path, default=None, help="a sales file (see above)")
    args = parser.parse_args()
    keys = [f"S{n // 10:02d}|I{n % 10:02d}" for n in range(args.series)]
    real = RealData.read(args.data, args.series, args.history_days) if args.data else None
    if real is not None:
        keys = real.keys

    with (
        tempfile.TemporaryDirectory() as tmp,
        embedded_stack(
            Path(tmp), metrics_port=0, ingest_trigger_seconds=1.0, handoff_idle_seconds=1.0
        ) as settings,
    ):
        import ray

        from retrain.cluster.client import coordinator, daily_version
        from shelfcast.retrain_command import follow_wave
        from shelfcast.service import run_service

        ThresholdStore(settings.data_dir).set({"cooldown_seconds": "0"}, who="bench")
        if real is not None and real.plans is not None:
            write_plans(settings, *real.plans, 0)
        stop = threading.Event()
        service = threading.Thread(target=run_service, args=(settings, stop), daemon=True)
        service.start()
        producer = Producer(producer_config(settings, **{"linger.ms": 1}))
        watcher = Watcher(settings)

        print(
            f"warm-up: {args.history_days} days of history for {len(keys)} series", file=sys.stderr
        )
        rng = random.Random(7)
        history = (
            real.history()
            if real is not None
            else [
                event(
                    k,
                    START + timedelta(days=d),
                    0,
                    float(rng.randint(2, 8) + 3 * (d % 7 in (5, 6))),
                )
                for d in range(args.history_days)
                for k in keys
            ]
        )
        send(producer, settings, history)
        watcher.wait_new(keys, {}, timeout=1800)
        watcher.poll(5)  # let the coalesced second round (if any) land too

        day = real.next_day if real is not None else START + timedelta(days=args.history_days)
        sold = real.sold if real is not None else (lambda key, day: 7.0)
        singles = []
        for n in range(args.singles):
            key = keys[n % len(keys)]
            before = dict(watcher.versions)
            sent = send(producer, settings, [event(key, day, 1, sold(key, day))])
            arrived = watcher.wait_new([key], before, timeout=120)
            singles.append(arrived[key] - sent)
            watcher.poll(0.5)
        print(f"single: {len(singles)} series measured", file=sys.stderr)
        planned = []
        for n in range(args.plans):
            key = keys[(n + args.singles) % len(keys)]
            before = dict(watcher.versions)
            sent = send_plan(producer, settings, key, day + timedelta(days=3), n)
            arrived = watcher.wait_new([key], before, timeout=120)
            planned.append(arrived[key] - sent)
            watcher.poll(0.5)
        print(f"plan: {len(planned)} series measured", file=sys.stderr)

        day += timedelta(days=1)
        before = dict(watcher.versions)
        sent = send(producer, settings, [event(k, day, 1, sold(k, day)) for k in keys])
        arrived = watcher.wait_new(keys, before, timeout=1800)
        wave = [arrived[k] - sent for k in keys]

        config = retrain_config(settings)
        actor = coordinator(config)
        began = time.time()
        submitted = ray.get(
            actor.submit.remote([(*parse_series_key(k), 0.0) for k in keys], daily_version(config))
        )
        follow_wave(actor, submitted["wave_id"], submitted["total"])
        baseline = time.time() - began

        stop.set()
        service.join(120)
        watcher.consumer.close()

    print(
        f"\nevent -> forecast, {len(keys)} series, 1 s trigger, "
        f"{settings.ray_num_cpus or 'all'} CPUs"
    )
    print(
        f"  single changed series: p50 {statistics.median(singles):.2f} s, "
        f"p95 {pct(singles, 0.95):.2f} s"
    )
    if planned:
        print(
            f"  plan for a single series: p50 {statistics.median(planned):.2f} s, "
            f"p95 {pct(planned, 0.95):.2f} s"
        )
    print(
        f"  wave of {len(keys)}: p50 {statistics.median(wave):.2f} s, p95 {pct(wave, 0.95):.2f} s, "
        f"last {max(wave):.2f} s"
    )
    print(f"  baseline, the same wave straight to the coordinator: {baseline:.2f} s")
    print(f"  ratio wave (last forecast) / baseline: {max(wave) / baseline:.2f}")


if __name__ == "__main__":
    main()
