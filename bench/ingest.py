"""Benchmark: sustained ingest throughput and event-to-Delta latency, against a bare ceiling.

Both runs share one broker and one process: (1) the Shelfcast ingest query (Spark, Python
Kafka source, validation, dedup, three Delta tables) with a 1 s trigger; (2) the ceiling: a
bare confluent-kafka consumer appending to one Delta table in a loop. A separate producer
process sends events at a fixed rate to each. Latency is the record's produce time to the
moment its Delta commit returned.

The first ``--warmup`` seconds of load are sent and stored but not measured: they pay for
one-time costs (Spark starting its Python workers on the first batch with data), which
are not what "sustained" means.

    python -m bench.ingest [--rate 20000] [--seconds 30] [--warmup 5]
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
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, TopicPartition
from deltalake import DeltaTable, write_deltalake

from shelfcast.embedded import start_broker, stop_process
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
                producer.produce(topic, key=f"{store}|{item}", value=value)
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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
    settings: Settings, rate: float, seconds: float, warmup: float
) -> dict[str, float]:
    from shelfcast.ingest_config import spark_config
    from streaming.query import build_pipeline, start_query, stop_gracefully
    from streaming.spark import spark_session

    spark = spark_session(spark_config(settings))
    pipeline = build_pipeline(settings)
    commit_at: dict[int, float] = {}
    pipeline.after_commit.append(lambda r: commit_at.__setitem__(r.batch_id, time.time()))
    query = start_query(spark, settings, pipeline)
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
    spark.stop()
    rows = DeltaTable(str(table)).to_pyarrow_table(columns=["batch_id", "kafka_timestamp"])
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        produce(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        settings = load_settings(
            data_dir=Path(tmp) / "data",
            bootstrap_servers=f"127.0.0.1:{port}",
            ingest_trigger_seconds=1.0,
        )
        broker = start_broker(settings)
        try:
            ensure_topics(settings)
            ceiling = run_ceiling(settings, Path(tmp), args.rate, args.seconds, args.warmup)
            ours = run_shelfcast(settings, args.rate, args.seconds, args.warmup)
        finally:
            stop_process(broker.pid)
    print(
        f"offered load: {args.rate:,.0f} events/s, {args.warmup:.0f} s warm-up then "
        f"{args.seconds:.0f} s measured, trigger 1 s, 2 cores"
    )
    for name, r in (("ceiling (bare consumer -> delta)", ceiling), ("shelfcast ingest", ours)):
        print(
            f"{name:34s} {r['stored']:>9,.0f}/{r['sent']:,.0f} stored  "
            f"produced {r['produced_per_s']:>7,.0f} ev/s  stored {r['events_per_s']:>7,.0f} ev/s  "
            f"p50 {r['p50']:.2f} s  p95 {r['p95']:.2f} s"
        )
    speed = ours["events_per_s"] / ceiling["events_per_s"]
    slower = ours["p95"] / ceiling["p95"]
    print(f"ratio shelfcast/ceiling: throughput {speed:.2f}, p95 latency {slower:.2f}")


if __name__ == "__main__":
    main()
