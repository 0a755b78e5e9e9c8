"""The Java jars Shelfcast runs: fetched once by ``scripts/setup`` (Maven), loaded as local files.

Two folders under ``SHELFCAST_JARS_DIR``: ``kafka-broker`` (Apache Kafka and its logging) and
``spark`` (Spark's Kafka source and sink, delta-spark, and their dependencies). Nothing is
downloaded at run time.
"""

import re
import shutil
from pathlib import Path

from shelfcast.errors import EmbeddedStackError

__all__ = ["SETUP_HINT", "broker_classpath", "java_binary", "spark_jars"]

SETUP_HINT = "Run ./scripts/setup (it fetches them once with Maven) or set SHELFCAST_JARS_DIR."
# "kafka-clients-3.9.2.jar" -> "kafka-clients"; "zstd-jni-1.5.7-3.jar" -> "zstd-jni".
_VERSION = re.compile(r"-\d[\w.]*(-\d+)?\.jar$")


def _artifact(jar: Path) -> str:
    return _VERSION.sub("", jar.name)


def _folder(jars_dir: Path, name: str, what: str) -> list[Path]:
    folder = jars_dir / name
    jars = sorted(folder.glob("*.jar")) if folder.is_dir() else []
    if not jars:
        raise EmbeddedStackError(f"The {what} jars are not in {folder}. {SETUP_HINT}")
    return jars


def java_binary() -> str:
    """The ``java`` on PATH; an error that says how to get one otherwise."""
    found = shutil.which("java")
    if found is None:
        raise EmbeddedStackError(
            "No Java runtime on PATH: the Kafka broker and Spark need Java 17+. "
            "Run ./scripts/setup (it installs openjdk-17-jre-headless), or install one."
        )
    return found


def broker_classpath(jars_dir: Path) -> str:
    """The Apache Kafka broker's classpath (every jar of ``kafka-broker``)."""
    return ":".join(str(jar) for jar in _folder(jars_dir, "kafka-broker", "Apache Kafka"))


def spark_jars(jars_dir: Path, spark_home_jars: Path) -> list[Path]:
    """The extra jars for Spark, without artifacts pyspark already ships.

    Maven resolves the connector's own versions of Spark's libraries (Jackson, Hadoop,
    Parquet, Scala); two versions of one library on a classpath fail at run time, so
    pyspark's copy wins and only what it lacks is added.
    """
    shipped = {_artifact(jar) for jar in spark_home_jars.glob("*.jar")}
    extra = _folder(jars_dir, "spark", "Spark Kafka connector and delta-spark")
    return [jar for jar in extra if _artifact(jar) not in shipped]
