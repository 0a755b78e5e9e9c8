"""The streaming side's typed config, built from the settings (the lower package never reads
them itself)."""

import logging
from pathlib import Path

import pyspark

from shelfcast.errors import EmbeddedStackError
from shelfcast.jars import SETUP_HINT, spark_jars
from shelfcast.kafka import client_config, java_client_options
from shelfcast.settings import Settings
from streaming.source import SourceConfig
from streaming.spark import SparkConfig

__all__ = ["source_config", "spark_config"]

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
    )


def source_config(settings: Settings) -> SourceConfig:
    """The ingest source with both clients' options (each under its own names)."""
    return SourceConfig(
        topic=settings.topic_pos_sales,
        kind=settings.ingest_source,
        max_events_per_batch=settings.ingest_max_events_per_batch,
        on_data_loss=settings.ingest_on_data_loss,
        java_options=java_client_options(settings),
        librdkafka_options={k: str(v) for k, v in client_config(settings).items()},
    )
