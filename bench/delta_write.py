"""Benchmark: a micro-batch's Delta commits, delta-rs (Shelfcast's writer) against delta-spark.

In one process, on tables created by ``TableStore.ensure``, each micro-batch of ``--events``
pos_sales rows is written four ways, interleaved so that both writers see the same machine:

- append: ``TableStore.append_once`` (delta-rs) against a DataFrame write with ``txnAppId``
  and ``txnVersion`` (delta-spark, from the batch's Arrow table as foreachBatch would have it);
- merge: the batch's daily increments into ``daily_sales`` (history of ``--days`` days per
  series), ``TableStore.add_daily_once`` against delta-spark's MERGE with the same condition,
  made idempotent by the session's ``spark.databricks.delta.write.txnAppId/txnVersion``.

Per-commit wall p50/p95 after ``--warmup`` batches, CPU per commit (this process, where
delta-rs runs, plus Spark's JVM: what a busy machine does not distort), and delta-spark/delta-rs.
At the end the first and last batch are re-sent with their ids (each writer must skip them) and
both writers' tables are compared.

    python -m bench.delta_write [--events 20000] [--batches 20] [--series 2000]
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, SparkSession

from shelfcast.ingest_config import spark_config
from shelfcast.settings import load_settings
from streaming.aggregate import daily_increments
from streaming.schemas import DAILY_SALES, POS_SALES
from streaming.spark import spark_session
from streaming.tables import TableStore

APP = "bench-delta-write"
TODAY = date(2024, 6, 30)
MERGE_CONDITION = (
    "t.store_id IN ({stores}) AND t.store_id = s.store_id "
    "AND t.item_id = s.item_id AND t.day = s.day"
)
MERGE_SET: dict[str, str | Column] = {
    "units": "t.units + s.units",
    "revenue": "t.revenue + s.revenue",
    "returns": "t.returns + s.returns",
    "event_count": "t.event_count + s.event_count",
    "updated_batch_id": "s.updated_batch_id",
}


def pos_batch(batch_id: int, events: int, series: int) -> pa.Table:
    """``events`` sales of ``series`` series (20 stores): nine in ten today, one yesterday."""
    now = datetime.now(UTC)
    n = range(events)
    days = [TODAY - timedelta(days=int(k % 10 == 0)) for k in n]
    return pa.Table.from_pydict(
        {
            "event_id": [f"b{batch_id}-{k}" for k in n],
            "store_id": [f"S{k % 20:02d}" for k in n],
            "item_id": [f"I{(k // 20) % (series // 20):04d}" for k in n],
            "sold_at": [datetime.combine(d, datetime.min.time(), UTC) for d in days],
            "sale_date": days,
            "quantity": [float(1 + k % 3) for k in n],
            "unit_price": [2.5] * events,
            "kafka_topic": ["pos.sales"] * events,
            "kafka_partition": [k % 4 for k in n],
            "kafka_offset": [batch_id * events + k for k in n],
            "kafka_timestamp": [now] * events,
            "batch_id": [batch_id] * events,
            "ingested_at": [now] * events,
        },
        schema=POS_SALES,
    )


def history(series: int, days: int) -> pa.Table:
    """``days`` days before today of every series in ``daily_sales``."""
    keys = [(f"S{k % 20:02d}", f"I{(k // 20) % (series // 20):04d}") for k in range(series)]
    rows = [(s, i, TODAY - timedelta(days=d)) for s, i in keys for d in range(1, days + 1)]
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "store_id": [s for s, _, _ in rows],
            "item_id": [i for _, i, _ in rows],
            "day": [d for _, _, d in rows],
            "units": [4.0] * n,
            "revenue": [10.0] * n,
            "returns": [0.0] * n,
            "event_count": [4] * n,
            "updated_batch_id": [-1] * n,
        },
        schema=DAILY_SALES,
    )


def spark_append(spark: SparkSession, path: str, batch: pa.Table, batch_id: int) -> None:
    """What a delta-spark foreachBatch would do with the batch's stored events."""
    (
        spark.createDataFrame(batch)
        .write.format("delta")
        .mode("append")
        .option("txnAppId", APP)
        .option("txnVersion", batch_id)
        .save(path)
    )


def spark_merge(spark: SparkSession, path: str, deltas: pa.Table, batch_id: int) -> None:
    """``add_daily_once`` through delta-spark: MERGE, idempotent by the session's txn conf."""
    from delta.tables import DeltaTable as SparkDeltaTable

    stores = ", ".join(f"'{s}'" for s in sorted(set(deltas.column("store_id").to_pylist())))
    spark.conf.set("spark.databricks.delta.write.txnAppId", APP)
    spark.conf.set("spark.databricks.delta.write.txnVersion", str(batch_id))
    try:
        (
            SparkDeltaTable.forPath(spark, path)
            .alias("t")
            .merge(spark.createDataFrame(deltas).alias("s"), MERGE_CONDITION.format(stores=stores))
            .whenMatchedUpdate(set=MERGE_SET)
            .whenNotMatchedInsertAll()
            .execute()
        )
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")


def cpu_seconds(pids: tuple[int, ...]) -> float:
    """User + system CPU of these processes so far (all their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def jvm_pid(spark: SparkSession) -> int:
    jvm = spark._jvm
    assert jvm is not None
    return int(jvm.java.lang.ProcessHandle.current().pid())


def timed(run: Callable[[], object], pids: tuple[int, ...]) -> tuple[float, float]:
    """Wall and CPU seconds (this process and Spark's JVM) of ``run``."""
    cpu, started = cpu_seconds(pids), time.perf_counter()
    run()
    return time.perf_counter() - started, cpu_seconds(pids) - cpu


def quantiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    cuts = statistics.quantiles(seconds, n=20, method="inclusive")
    return statistics.median(seconds) * 1000, cuts[18] * 1000


def totals(table: pa.Table) -> tuple[int, float, int]:
    return (
        table.num_rows,
        float(pc.sum(table.column("units")).as_py()),
        int(pc.sum(table.column("event_count")).as_py()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per micro-batch")
    parser.add_argument("--batches", type=int, default=20, help="measured batches per writer")
    parser.add_argument("--warmup", type=int, default=3, help="batches first, not measured")
    parser.add_argument("--series", type=int, default=2_000, help="store-item series (x20)")
    parser.add_argument("--days", type=int, default=30, help="daily_sales history per series")
    parser.add_argument(
        "--snapshot-partitions",
        type=int,
        default=2,
        help="delta-spark's spark.databricks.delta.snapshotPartitions (its default: 50)",
    )
    args = parser.parse_args()

    spark = spark_session(spark_config(load_settings()), app_name="bench-delta-write")
    spark.conf.set("spark.databricks.delta.snapshotPartitions", str(args.snapshot_partitions))
    root = Path(tempfile.mkdtemp(prefix="bench-delta-write-"))
    try:
        rs = TableStore(root / "delta-rs")
        rs.ensure()
        rs.append_once("daily_sales", history(args.series, args.days), "history", 0)
        shutil.copytree(rs.root, root / "delta-spark")
        sp = TableStore(root / "delta-spark")
        sp_sales, sp_daily = sp.uri("pos_sales"), sp.uri("daily_sales")

        pids = (os.getpid(), jvm_pid(spark))
        steps = ("rs append", "spark append", "rs merge", "spark merge")
        wall: dict[str, list[float]] = {k: [] for k in steps}
        cpu: dict[str, list[float]] = {k: [] for k in steps}
        batches = [
            pos_batch(b, args.events, args.series) for b in range(args.warmup + args.batches)
        ]
        for b, batch in enumerate(batches):
            deltas = daily_increments(batch, b)
            took = {
                "rs append": timed(partial(rs.append_once, "pos_sales", batch, APP, b), pids),
                "spark append": timed(partial(spark_append, spark, sp_sales, batch, b), pids),
                "rs merge": timed(partial(rs.add_daily_once, deltas, APP, b), pids),
                "spark merge": timed(partial(spark_merge, spark, sp_daily, deltas, b), pids),
            }
            if b >= args.warmup:
                for key, (seconds, cpu_used) in took.items():
                    wall[key].append(seconds)
                    cpu[key].append(cpu_used)

        # The first and the last batch again with their ids: each writer must skip them.
        for b in (0, len(batches) - 1):
            assert not rs.append_once("pos_sales", batches[b], APP, b)
            assert not rs.add_daily_once(daily_increments(batches[b], b), APP, b)
            spark_append(spark, sp_sales, batches[b], b)
            spark_merge(spark, sp_daily, daily_increments(batches[b], b), b)
        stored = args.events * len(batches)
        assert rs.read("pos_sales", ["event_id"]).num_rows == stored
        assert sp.read("pos_sales", ["event_id"]).num_rows == stored
        assert totals(rs.read("daily_sales")) == totals(sp.read("daily_sales"))
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)

    deltas_rows = daily_increments(batches[0], 0).num_rows
    print(
        f"{args.events} events/batch ({deltas_rows} daily rows merged into "
        f"{args.series * args.days:,}), {args.batches} batches after {args.warmup} warm-up, "
        f"snapshotPartitions={args.snapshot_partitions}"
    )
    print(f"{'commit':<8}{'writer':<13}{'p50 ms':>9}{'p95 ms':>9}{'CPU ms p50':>12}")
    summary: dict[str, tuple[float, float]] = {}
    for key, took_s in wall.items():
        writer, step = key.split(" ")
        summary[key] = quantiles(took_s)
        name = "delta-rs" if writer == "rs" else "delta-spark"
        used = statistics.median(cpu[key]) * 1000
        print(f"{step:<8}{name:<13}{summary[key][0]:>9.0f}{summary[key][1]:>9.0f}{used:>12.0f}")
    for step in ("append", "merge"):
        (rs50, rs95), (sp50, sp95) = summary[f"rs {step}"], summary[f"spark {step}"]
        print(f"ratio delta-spark/delta-rs, {step}: p50 {sp50 / rs50:.1f}x, p95 {sp95 / rs95:.1f}x")


if __name__ == "__main__":
    main()
