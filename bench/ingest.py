"""Benchmark: sustained ingest throughput and event-to-Delta latency, against a bare ceiling.

Both runs share one broker and one process: (1) the Shelfcast ingest query (Spark, Python
Kafka source, validation, dedup, three Delta tables) with a 1 s trigger; (2) the ceiling: a
bare confluent-kafka consumer appending to one Delta table in a loop. A separate producer
process sends events at a fixed rate to each. Latency is the record's produce time to the
moment its Delta commit returned.

    python -m bench.ingest [--rate 25000] [--seconds 30]
"""

import argparse
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


def produce(bootstrap: str, topic: str, rate: float, seconds: float) -> None:
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
                    "event_id": f"b-{n}",
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
    settings: Settings, topic: str, rate: float, seconds: float
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
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_shelfcast(settings: Settings, rate: float, seconds: float) -> dict[str, float]:
    from streaming.query import build_pipeline, start_query, stop_gracefully
    from streaming.spark import spark_session

    spark = spark_session(settings)
    pipeline = build_pipeline(settings)
    commit_at: dict[int, float] = {}
    pipeline.after_commit.append(lambda r: commit_at.__setitem__(r.batch_id, time.time()))
    query = start_query(spark, settings, pipeline)
    time.sleep(8)  # let Spark start its Python workers before the load begins
    producer = start_producer(settings, settings.topic_pos_sales, rate, seconds)
    sent = int(producer.communicate()[0].strip())
    deadline = time.monotonic() + 120
    table = settings.delta_dir / "pos_sales"
    while time.monotonic() < deadline:
        if DeltaTable(str(table)).count() >= sent:
            break
        time.sleep(0.5)
    stop_gracefully(query)
    spark.stop()
    rows = DeltaTable(str(table)).to_pyarrow_table(columns=["batch_id", "kafka_timestamp"])
    stamps = [t.timestamp() for t in rows.column("kafka_timestamp").to_pylist()]
    latency = [
        commit_at[b] - t for b, t in zip(rows.column("batch_id").to_pylist(), stamps, strict=True)
    ]
    return {
        "sent": sent,
        "stored": rows.num_rows,
        "events_per_s": rows.num_rows / (max(commit_at.values()) - min(stamps)),
        "p50": statistics.median(latency),
        "p95": pct(latency, 0.95),
    }


def run_ceiling(settings: Settings, root: Path, rate: float, seconds: float) -> dict[str, float]:
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
    latency: list[float] = []
    stored = 0
    first: float | None = None
    last_commit = 0.0
    done = threading.Event()
    producer = start_producer(settings, topic, rate, seconds)
    sent_box: list[int] = []

    def wait_producer() -> None:
        sent_box.append(int(producer.communicate()[0]))
        done.set()

    threading.Thread(target=wait_producer, daemon=True).start()
    while not (done.is_set() and sent_box and stored >= sent_box[0]):
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
        last_commit = time.time()
        first = min(stamps) if first is None else first
        latency.extend(last_commit - t for t in stamps)
        stored += len(values)
    consumer.close()
    assert first is not None
    return {
        "sent": sent_box[0],
        "stored": stored,
        "events_per_s": stored / (last_commit - first),
        "p50": statistics.median(latency),
        "p95": pct(latency, 0.95),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        produce(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=25_000)
    parser.add_argument("--seconds", type=float, default=30)
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
            ceiling = run_ceiling(settings, Path(tmp), args.rate, args.seconds)
            ours = run_shelfcast(settings, args.rate, args.seconds)
        finally:
            stop_process(broker.pid)
    print(f"offered load: {args.rate:,.0f} events/s for {args.seconds:.0f} s, trigger 1 s, 2 cores")
    for name, r in (("ceiling (bare consumer -> delta)", ceiling), ("shelfcast ingest", ours)):
        print(
            f"{name:34s} {r['stored']:>9,.0f}/{r['sent']:,.0f} stored  "
            f"{r['events_per_s']:>9,.0f} ev/s  p50 {r['p50']:.2f} s  p95 {r['p95']:.2f} s"
        )
    speed = ours["events_per_s"] / ceiling["events_per_s"]
    slower = ours["p95"] / ceiling["p95"]
    print(f"ratio shelfcast/ceiling: throughput {speed:.2f}, p95 latency {slower:.2f}")


if __name__ == "__main__":
    main()
