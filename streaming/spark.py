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
from streaming.java import class_archive_options, java_runtime
from streaming.spark_temp import driver_temp_dir

__all__ = [
    "SparkConfig",
    "class_archive_path",
    "java_runtime",
    "record_class_archive",
    "spark_session",
]

# Spark's default redaction plus the Kafka JAAS line, which carries the SASL password.
_REDACT = r"(?i)secret|password|token|access[.]?key|jaas"


def spark_session(config: SparkConfig, app_name: str = "shelfcast-ingest") -> SparkSession:
    """Get or create the session. The Python data source is registered where it is used
    (:func:`streaming.source.kafka_stream`): a registration makes Spark look up the Python
    data sources first, in a Python worker of its own (~1 s of a start)."""
    return _session(config, app_name)


def _session(config: SparkConfig, app_name: str, record_to: Path | None = None) -> SparkSession:
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
        .config("spark.driver.extraJavaOptions", " ".join(_driver_options(config, record_to)))
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


def _driver_options(config: SparkConfig, record_to: Path | None = None) -> list[str]:
    temp = None if config.temp_root is None else driver_temp_dir(config.temp_root)
    return [
        f"-Dderby.system.home={_derby_home(config)}",
        *([] if temp is None else [f"-Djava.io.tmpdir={temp}"]),
        *class_archive_options(config.class_archive, record_to),
    ]


def class_archive_path() -> Path:
    """Where this environment keeps its archive of Spark's driver classes: in the virtualenv,
    named by the pyspark version whose jars it holds and the Java runtime that wrote it. An
    archive of another version or Java is not used: after an upgrade, Spark starts without
    one (a mismatched archive costs a warning line at every start) until setup records the
    new one."""
    import pyspark

    name = f"spark-{pyspark.__version__}-java-{java_runtime()}.jsa"
    return Path(sys.prefix) / "share" / "shelfcast" / name


def record_class_archive(config: SparkConfig, path: Path) -> None:
    """Start a session on ``config``, run a small job and stop: the JVM writes the classes it
    loaded to ``path`` when it exits, with this process (JDK class-data sharing). A session
    that maps them starts in about half the time (docs/benchmarks.md); a JVM that cannot use
    them (another Java) says so in one warning line and starts as before. Its JVM ends with
    it: run it in a process of its own (``shelfcast.class_archive``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spark = _session(config, "shelfcast-class-archive", record_to=path)
    try:
        import pandas as pd

        # What an ingest batch exercises first: Arrow from pandas, a grouped aggregate
        # (code generation), a collect.
        frame = spark.createDataFrame(pd.DataFrame({"k": ["a", "b", "a"], "v": [1.0, 2.0, 3.0]}))
        frame.groupBy("k").sum("v").collect()
        spark.range(1000).selectExpr("id % 7 AS k").groupBy("k").count().toPandas()
    finally:
        from pyspark import SparkContext

        gateway = SparkContext._gateway  # noqa: SLF001 (pyspark keeps its JVM process there)
        spark.stop()
        # The JVM writes the archive when it exits, which it does once its stdin closes.
        proc = getattr(gateway, "proc", None)
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
            proc.wait(120)


def _derby_home(config: SparkConfig) -> Path:
    # Derby makes the folder only if Spark ever opens its catalog.
    return _private_derby_home() if config.derby_home is None else config.derby_home


@functools.cache
def _private_derby_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="shelfcast-derby-"))
