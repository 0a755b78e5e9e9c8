"""The Spark session of the streaming side, tuned for a small local or a real cluster."""

import functools
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from pyspark.sql import SparkSession

from streaming.config import SparkConfig

__all__ = ["SparkConfig", "spark_session"]

# Spark's default redaction plus the Kafka JAAS line, which carries the SASL password.
_REDACT = r"(?i)secret|password|token|access[.]?key|jaas"


def spark_session(config: SparkConfig, app_name: str = "shelfcast-ingest") -> SparkSession:
    """Get or create the session. The Python data source is registered where it is used
    (:func:`streaming.source.kafka_stream`): a registration makes Spark look up the Python
    data sources first, in a Python worker of its own (~1 s of a start)."""
    # Workers, including the streaming-source runner, must import our installed package.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(config.master)
        .appName(app_name)
        .config("spark.driver.memory", config.driver_memory)
        # 200 made a tiny groupBy 50 % slower here; shuffles are per micro-batch and small.
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.redaction.regex", _REDACT)
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={_derby_home(config)}")
    )
    if config.jars:
        # Local files only: nothing is resolved or downloaded when the session starts.
        builder = builder.config("spark.jars", ",".join(str(jar) for jar in config.jars))
    if config.delta:
        builder = builder.config(
            "spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension"
        ).config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    # SparkContext replaces SIGINT with its own handler; keep the caller's graceful stop.
    previous = signal.getsignal(signal.SIGINT)
    spark = builder.getOrCreate()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, previous)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _derby_home(config: SparkConfig) -> Path:
    # Derby makes the folder only if Spark ever opens its catalog.
    return _private_derby_home() if config.derby_home is None else config.derby_home


@functools.cache
def _private_derby_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="shelfcast-derby-"))
