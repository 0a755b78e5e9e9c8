"""Start the ingest query and run it until asked to stop; a stop lets the batch in flight finish."""

import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Callable

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from contracts import PLAN_V1, STORE_V1
from streaming.config import IngestConfig
from streaming.dead_letters import DeadLetterTopic
from streaming.errors import IngestError
from streaming.pipeline import IngestPipeline
from streaming.source import kafka_stream
from streaming.spark import spark_session
from streaming.tables import TableStore

__all__ = [
    "DRAIN_SECONDS",
    "STOP_SECONDS",
    "build_pipeline",
    "explain_failure",
    "run_ingest",
    "start_query",
    "stop_gracefully",
]

log = logging.getLogger("shelfcast.ingest")


def build_pipeline(config: IngestConfig) -> IngestPipeline:
    """The foreachBatch pipeline wired to the real tables and dead-letter topic."""
    store = TableStore(config.delta_dir)
    store.ensure(log_retention_hours=config.vacuum_retention_hours)
    return IngestPipeline(
        store=store,
        dead_letters=DeadLetterTopic(
            config.kafka,
            config.topics.dlq,
            contracts={config.topics.plans: PLAN_V1, config.topics.stores: STORE_V1},
        ),
        limits=config.limits,
        checkpoint=config.checkpoint,
        dedup_window_days=config.dedup_window_days,
        maintain_every=config.compact_every_batches,
        maintain_every_seconds=config.compact_every_hours * 3600,
        retention_hours=config.vacuum_retention_hours,
        topics=config.topics,
        max_batch_bytes=config.max_batch_bytes,
        max_batch_records=config.max_events_per_batch,
    )


def clear_unwritten_first_offsets(checkpoint: "os.PathLike[str] | str") -> list[str]:
    """Remove the temporary files a kill left while the first batch's offsets were written.

    Spark writes a batch's offsets to a hidden temporary file and renames it. A process
    killed before the first rename leaves only that file, and Spark then refuses to start
    ("offsets should be empty on batch 0"). With no batch logged, nothing is lost. Returns
    the names removed.
    """
    from pathlib import Path

    offsets = Path(checkpoint) / "offsets"
    if not offsets.is_dir():
        return []
    names = [f.name for f in offsets.iterdir()]
    if any(not n.startswith(".") for n in names):  # a batch was logged: Spark resumes it
        return []
    removed = [n for n in names if n.endswith((".tmp", ".tmp.crc"))]
    for name in removed:
        (offsets / name).unlink()
    if removed:
        log.warning("removed %d unfinished first-batch offset files: %s", len(removed), removed)
    return removed


def start_query(
    spark: SparkSession, config: IngestConfig, pipeline: IngestPipeline
) -> StreamingQuery:
    """Start the streaming query: Kafka -> foreachBatch(pipeline)."""
    source = config.source
    frame, fmt = kafka_stream(spark, source)
    log.info("ingest source: %s, topics %s", fmt, ", ".join(source.topics))
    clear_unwritten_first_offsets(pipeline.checkpoint)
    return (
        frame.writeStream.queryName("shelfcast_ingest")
        .foreachBatch(pipeline)
        .option("checkpointLocation", str(pipeline.checkpoint))
        .trigger(processingTime=f"{int(config.trigger_seconds * 1000)} milliseconds")
        .start()
    )


# How ``run_ingest`` stops: the micro-batch in flight gets DRAIN_SECONDS to finish (one takes
# ~0.1-1 s), Spark's stop STOP_SECONDS more. A batch that cannot finish in time (its broker
# is down, a Delta write hangs) is cut short and replayed from the checkpoint at the next
# start, exactly once, as after a crash; the process exits either way.
DRAIN_SECONDS = 3.0
STOP_SECONDS = 3.0


def stop_gracefully(
    query: StreamingQuery, timeout: float = 120.0, stop_timeout: float | None = None
) -> bool:
    """Let the micro-batch in flight finish (at most ``timeout`` s; not the ones after it),
    then stop the query, waiting for Spark's stop at most ``stop_timeout`` s (None: until it
    returns). True when the query stopped; False when its stop goes on in the background."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):  # the JVM may be gone: stop() says so below
        in_flight = _last_batch(query)  # the batch running now completes as the next one
        while (
            query.isActive
            and query.status.get("isTriggerActive")
            and _last_batch(query) == in_flight
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    done = threading.Event()

    def stop() -> None:
        try:
            query.stop()
        except Exception as exc:
            text = str(exc).strip()
            log.warning(
                "stopping the ingest query failed: %s", text.splitlines()[0] if text else exc
            )
        finally:
            done.set()

    if stop_timeout is None:
        stop()
        return True
    threading.Thread(target=stop, name="shelfcast-query-stop", daemon=True).start()
    return done.wait(stop_timeout)


def _last_batch(query: StreamingQuery) -> int | None:
    """The id of the last batch the query completed (None before the first)."""
    progress = query.lastProgress
    return None if not progress else int(progress["batchId"])


def explain_failure(message: str) -> str:
    """What to do about a failed query, in Shelfcast's terms (Spark's text names its options)."""
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    if "failOnDataLoss" in message or "SHELFCAST_INGEST_ON_DATA_LOSS" in message:
        reason = next((line for line in message.splitlines() if "Reason:" in line), first)
        return (
            f"The ingest query stopped because Kafka offsets no longer match its checkpoint "
            f"({reason.strip()}): events may have been lost. To go on from the earliest offset "
            "the broker still has, set SHELFCAST_INGEST_ON_DATA_LOSS=earliest and start again; "
            "to start over, delete the ingest checkpoint."
        )
    return (
        f"The ingest query failed: {first}. Fix the cause and start it again: it resumes from "
        "its checkpoint without losing or duplicating events."
    )


def run_ingest(
    config: IngestConfig,
    stop: threading.Event,
    on_start: Callable[[IngestPipeline], None] | None = None,
) -> None:
    """Run the ingest in the foreground until ``stop`` is set or the query fails (the
    topics exist: the application creates them)."""
    pipeline = build_pipeline(config)
    if on_start is not None:
        on_start(pipeline)
    spark = spark_session(config.spark)
    query = start_query(spark, config, pipeline)
    # Everything built so far (Spark, pandas, pydantic) lives as long as the process: keep it
    # out of the cyclic collector's full passes, which otherwise stall a batch now and then.
    gc.freeze()
    log.info("ingest running (query %s); Ctrl-C or SIGTERM stops it gracefully", query.id)
    try:
        while not stop.is_set():
            try:
                if query.awaitTermination(1):
                    break
            except StreamingQueryException as exc:
                raise IngestError(explain_failure(str(exc))) from exc
    finally:
        if query.isActive and not stop_gracefully(query, DRAIN_SECONDS, STOP_SECONDS):
            log.warning(
                "the ingest query did not stop within %.0f s; its batch in flight is replayed "
                "from the checkpoint at the next start",
                DRAIN_SECONDS + STOP_SECONDS,
            )
        if isinstance(pipeline.dead_letters, DeadLetterTopic):
            pipeline.dead_letters.close(timeout=1.0)
        # A compaction in flight gets a moment; cut short, it leaves only unnamed files.
        pipeline.store.compactor.close(timeout=1.0)
        log.info("ingest stopped")
