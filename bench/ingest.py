"""Benchmark: the highest sustained ingest rate with event-to-Delta p95 <= 2 s, per source,
next to a bare ceiling, on the embedded Apache Kafka.

Every run shares one broker and one process: (1) the Shelfcast ingest query (Spark, the
chosen Kafka source, validation, dedup, three Delta tables) with a 1 s trigger, once with
Spark's ``kafka`` source and once with the Python source; (2) the ceiling: a bare
confluent-kafka consumer appending to one Delta table in a loop. A separate producer process
sends events at a fixed rate. Latency is the record's produce time to the moment its Delta
commit returned. Each offered rate of ``--rates`` (ascending) runs on fresh topics and
tables; the search stops at the first rate that misses p95 <= ``--p95`` s or stores less than
90 % of the rate it was produced at. Every run asserts that each event was stored exactly once.

The first ``--warmup`` seconds of load are sent and stored but not measured: they pay for
one-time costs (Spark starting its Python workers on the first batch with data), which
are not what "sustained" means.

    python -m bench.ingest [--rates 10000 20000 30000 40000] [--seconds 20] [--warmup 5]
                           [--sources kafka python]
"""

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute
from confluent_kafka import Consumer, KafkaError, TopicPartition
from deltalake import DeltaTable, write_deltalake

from bench.stats import pct
from contracts.series import series_key
from shelfcast.embedded import free_port, start_broker, stop_process
from shelfcast.kafka import client_config, ensure_topics, producer_config
from shelfcast.settings import Settings, load_settings


def produce(bootstrap: str, topic: str, rate: float, seconds: float, prefix: str) -> None:
    """Producer process: ``rate`` events/s for ``seconds``."""
    from confluent_kafka import Producer

    settings = load_settings(bootstrap_servers=bootstrap)
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    today = datetime.now(UTC).date().isoformat()
    started = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate)
        while n < due:
            store, item = f"S{n % 20:02d}", f"I{(n // 20) % 25:03d}"
            value = json.dumps(
                {
                    "event_id": f"{prefix}-{n}",
                    "store_id": store,
                    "item_id": item,
                    "sold_at": f"{today}T10:00:00+00:00",
                    "quantity": 1.0,
                    "unit_price": 2.5,
                }
            )
            try:
                producer.produce(topic, key=series_key(store, item), value=value)
            except BufferError:
                producer.poll(0.01)
                continue
            n += 1
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(60)
    print(n)


def start_producer(
    settings: Settings, topic: str, rate: float, seconds: float, prefix: str = "b"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.ingest",
            "--produce",
            settings.bootstrap_servers,
            topic,
            str(rate),
            str(seconds),
            prefix,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def summarize(
    stamps: list[float], commits: list[float], sent: int, from_ts: float
) -> dict[str, float]:
    """Throughput and latency of the records produced at or after ``from_ts``.

    Throughput is measured events over the time between the commits of the first and the
    last of them: the produce rate when latency holds steady, less when a backlog grows.
    """
    pairs = sorted((t, c) for t, c in zip(stamps, commits, strict=True) if t >= from_ts)
    latency = [c - t for t, c in pairs]
    return {
        "sent": sent,
        "stored": len(stamps),
        "produced_per_s": len(pairs) / (pairs[-1][0] - pairs[0][0]),
        "events_per_s": len(pairs) / (pairs[-1][1] - pairs[0][1]),
        "p50": statistics.median(latency),
        "p95": pct(latency, 0.95),
    }


def run_shelfcast(
    spark: Any, settings: Settings, rate: float, seconds: float, warmup: float
) -> dict[str, float]:
    from shelfcast.ingest_config import ingest_config
    from streaming.query import build_pipeline, start_query, stop_gracefully

    pipeline = build_pipeline(ingest_config(settings))
    commit_at: dict[int, float] = {}
    pipeline.after_commit.append(lambda r: commit_at.__setitem__(r.batch_id, time.time()))
    query = start_query(spark, ingest_config(settings), pipeline)
    gc.freeze()  # as run_ingest does
    table = settings.delta_dir / "pos_sales"

    def wait_stored(count: int) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if DeltaTable(str(table)).count() >= count:
                return
            time.sleep(0.5)

    # A running service has its Python workers up: prime them with a trickle, unmeasured.
    primer = start_producer(settings, settings.topic_pos_sales, 500, 2, prefix="primer")
    primed = int(primer.communicate()[0].strip())
    wait_stored(primed)
    load_started = time.time()
    producer = start_producer(settings, settings.topic_pos_sales, rate, warmup + seconds)
    sent = primed + int(producer.communicate()[0].strip())
    wait_stored(sent)
    stop_gracefully(query)
    rows = DeltaTable(str(table)).to_pyarrow_table(
        columns=["event_id", "batch_id", "kafka_timestamp"]
    )
    ids = rows.column("event_id")
    assert len(ids) == sent == len(pa.compute.unique(ids)), (
        f"stored {len(ids)} rows, {len(pa.compute.unique(ids))} distinct, of {sent} sent"
    )
    stamps = [t.timestamp() for t in rows.column("kafka_timestamp").to_pylist()]
    commits = [commit_at[b] for b in rows.column("batch_id").to_pylist()]
    return summarize(stamps, commits, sent, load_started + warmup)


def run_ceiling(
    settings: Settings, root: Path, rate: float, seconds: float, warmup: float
) -> dict[str, float]:
    """A bare consumer -> deltalake append loop: no Spark, no validation, one table."""
    topic = settings.topic_dlq  # a fresh, empty topic of the same shape
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": "ceiling",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.topic_partitions)])
    path = str(root / "ceiling")
    all_stamps: list[float] = []
    commits: list[float] = []
    done = threading.Event()
    load_started = time.time()
    producer = start_producer(settings, topic, rate, warmup + seconds)
    sent_box: list[int] = []

    def wait_producer() -> None:
        sent_box.append(int(producer.communicate()[0]))
        done.set()

    threading.Thread(target=wait_producer, daemon=True).start()
    while not (done.is_set() and sent_box and len(all_stamps) >= sent_box[0]):
        tick = time.monotonic()
        values, stamps = [], []
        while time.monotonic() - tick < 1.0:  # the same 1 s cadence as the trigger
            for msg in consumer.consume(10_000, 0.1):
                err = msg.error()
                if err is None or err.code() != KafkaError._PARTITION_EOF:
                    values.append(msg.value())
                    stamps.append(msg.timestamp()[1] / 1000)
        if not values:
            continue
        batch = pa.table(
            {"value": pa.array(values, pa.binary()), "ts": pa.array(stamps, pa.float64())}
        )
        write_deltalake(path, batch, mode="append")
        committed = time.time()
        all_stamps.extend(stamps)
        commits.extend([committed] * len(stamps))
    consumer.close()
    return summarize(all_stamps, commits, sent_box[0], load_started + warmup)


def fresh(settings: Settings, root: Path, name: str) -> Settings:
    """Settings with topics and a data dir of their own, topics created."""
    tag = uuid.uuid4().hex[:6]
    named = settings.model_copy(
        update={
            "data_dir": root / f"{name}-{tag}",
            "topic_pos_sales": f"pos-{tag}",
            "topic_pos_plans": f"plans-{tag}",
            "topic_pos_stores": f"stores-{tag}",
            "topic_dlq": f"dlq-{tag}",
            "topic_forecasts": f"fc-{tag}",
        }
    )
    ensure_topics(named)
    return named


def holds(r: dict[str, float], rate: float, p95: float) -> bool:
    """Sustained: p95 within the target, and stored about as fast as produced (a 1 s commit
    cadence over a ~20 s window leaves a few per cent of slack either way)."""
    return r["p95"] <= p95 and r["events_per_s"] >= 0.9 * min(rate, r["produced_per_s"])


def line(name: str, rate: float, r: dict[str, float], ok: bool) -> str:
    return (
        f"{name:10s} {rate:>7,.0f}  {r['stored']:>9,.0f}/{r['sent']:<9,.0f} "
        f"{r['produced_per_s']:>8,.0f} {r['events_per_s']:>8,.0f}  "
        f"{r['p50']:5.2f} {r['p95']:5.2f}  {'yes' if ok else 'no'}"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        produce(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", type=float, nargs="+", default=[10_000, 20_000, 30_000, 40_000])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--p95", type=float, default=2.0)
    parser.add_argument("--sources", nargs="+", default=["kafka", "python"])
    args = parser.parse_args()
    from shelfcast.ingest_config import spark_config
    from streaming.spark import spark_session

    best: dict[str, float] = {}
    print(
        f"{args.warmup:.0f} s warm-up then {args.seconds:.0f} s measured per rate, trigger 1 s, "
        f"2 cores, target p95 <= {args.p95:.1f} s; embedded Apache Kafka"
    )
    print("run        offered    stored/sent      produced   stored   p50   p95    held")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = load_settings(
            data_dir=root / "broker",
            bootstrap_servers=f"127.0.0.1:{free_port()}",
            ingest_trigger_seconds=1.0,
        )
        broker = start_broker(settings)
        spark = None
        try:
            runs: list[tuple[str, Any]] = [("ceiling", None)] + [(s, s) for s in args.sources]
            for name, source in runs:
                for rate in sorted(args.rates):
                    run = fresh(settings, root, name)
                    if source is None:
                        r = run_ceiling(run, root / run.topic_dlq, rate, args.seconds, args.warmup)
                    else:
                        run = run.model_copy(update={"ingest_source": source})
                        spark = spark or spark_session(spark_config(run))
                        r = run_shelfcast(spark, run, rate, args.seconds, args.warmup)
                    ok = holds(r, rate, args.p95)
                    print(line(name, rate, r, ok), flush=True)
                    if not ok:
                        break
                    best[name] = max(best.get(name, 0.0), r["events_per_s"])
        finally:
            if spark is not None:
                spark.stop()
            stop_process(broker.pid)
    print("highest sustained rate (stored ev/s at the highest offered rate that held):")
    for name, value in best.items():
        ratio = value / best["ceiling"] if best.get("ceiling") else float("nan")
        print(f"  {name:10s} {value:>8,.0f} ev/s   {ratio:.2f} x ceiling")


if __name__ == "__main__":
    main()
