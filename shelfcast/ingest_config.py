"""The streaming side's typed config, built from the settings (the lower package never reads
them itself)."""

import logging
from datetime import timedelta
from pathlib import Path

import pyspark

from shelfcast.errors import EmbeddedStackError
from shelfcast.jars import SETUP_HINT, spark_jars
from shelfcast.kafka import kafka_client
from shelfcast.settings import Settings
from streaming.config import IngestConfig, SourceConfig, Topics
from streaming.spark import SparkConfig, class_archive_path
from streaming.validate import Limits

__all__ = ["ingest_config", "source_config", "spark_config"]

log = logging.getLogger("shelfcast.ingest")


def spark_config(settings: Settings) -> SparkConfig:
    """The Spark session: master, memory, and the local Kafka connector and delta-spark jars."""
    shipped = Path(pyspark.__file__).parent / "jars"
    try:
        jars = tuple(spark_jars(settings.jars_dir, shipped))
    except EmbeddedStackError:
        if settings.ingest_source == "kafka":
            raise
        # 'auto' reads through the Python source without them; Delta stays on delta-rs.
        log.warning("Spark's Kafka connector and delta-spark jars are missing: %s", SETUP_HINT)
        jars = ()
    return SparkConfig(
        master=settings.spark_master,
        driver_memory=settings.spark_driver_memory,
        jars=jars,
        derby_home=settings.data_dir / "spark" / "derby",
        temp_root=settings.data_dir / "spark" / "tmp",
        class_archive=class_archive_path(),
    )


def ingest_config(settings: Settings, spark: SparkConfig | None = None) -> IngestConfig:
    """Everything the ingest query needs (``spark``: the session's, when already built)."""
    return IngestConfig(
        kafka=kafka_client(settings),
        delta_dir=settings.delta_dir,
        checkpoint=settings.checkpoint_dir / "ingest",
        topics=Topics(
            sales=settings.topic_pos_sales,
            plans=settings.topic_pos_plans,
            stores=settings.topic_pos_stores,
            dlq=settings.topic_dlq,
        ),
        source_kind=settings.ingest_source,
        on_data_loss=settings.ingest_on_data_loss,
        trigger_seconds=settings.ingest_trigger_seconds,
        max_events_per_batch=settings.ingest_max_events_per_batch,
        max_batch_bytes=settings.ingest_max_batch_bytes,
        limits=Limits(
            max_bytes=settings.ingest_max_event_bytes,
            max_future=timedelta(hours=settings.ingest_max_future_hours),
        ),
        dedup_window_days=settings.ingest_dedup_window_days,
        compact_every_batches=settings.ingest_compact_every_batches,
        compact_every_hours=settings.ingest_compact_every_hours,
        vacuum_retention_hours=settings.delta_vacuum_retention_hours,
        spark=spark or spark_config(settings),
    )


def source_config(settings: Settings) -> SourceConfig:
    """The ingest source: its topics and the Kafka client."""
    return ingest_config(settings, SparkConfig()).source
