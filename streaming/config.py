"""What the ingest needs, typed and frozen; the application builds it (streaming/ reads no
settings of its own).

Credentials stay ``SecretStr`` until a Kafka client is made: the option maps that carry them
are built by the methods below at that moment, never held in a field, logged or shown in a
repr.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from streaming.errors import IngestError

__all__ = [
    "IngestConfig",
    "KafkaClient",
    "Limits",
    "SourceConfig",
    "SparkConfig",
    "Topics",
]

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _jaas_quote(value: str) -> str:
    # JAAS values are double-quoted strings with backslash escapes.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class KafkaClient:
    """Where the broker is and how to authenticate; the password stays a ``SecretStr``."""

    bootstrap_servers: str
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None

    def librdkafka(self) -> dict[str, Any]:
        """librdkafka's settings (confluent-kafka): address and security, the password in
        clear. For a client being made; never log or keep the result."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password is not None and self.sasl_password.get_secret_value():
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location is not None:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        return config

    def java(self) -> dict[str, str]:
        """The same for Java Kafka clients (Spark's source), under their own names: a JAAS
        line for SASL, a PEM trust store for the CA file."""
        options = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            module = _LOGIN_MODULES.get(self.sasl_mechanism)
            if module is None:
                raise IngestError(
                    f"SASL mechanism {self.sasl_mechanism!r} has no Java login module here; use "
                    f"one of {', '.join(_LOGIN_MODULES)} or SHELFCAST_INGEST_SOURCE=python."
                )
            password = self.sasl_password.get_secret_value() if self.sasl_password else ""
            options["sasl.mechanism"] = self.sasl_mechanism
            options["sasl.jaas.config"] = (
                f"{module} required username={_jaas_quote(self.sasl_username or '')} "
                f"password={_jaas_quote(password)};"
            )
        if self.ssl_ca_location is not None:
            options["ssl.truststore.type"] = "PEM"
            options["ssl.truststore.location"] = str(self.ssl_ca_location)
        return options

    def producer(self, **extra: Any) -> dict[str, Any]:
        """An idempotent producer: retries never duplicate or reorder within a partition."""
        return {
            **self.librdkafka(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            **extra,
        }


@dataclass(frozen=True)
class SparkConfig:
    """What the session needs: where it runs and which local jars it loads."""

    master: str = "local[2,4]"  # two threads, a task tried up to 4 times as on a cluster
    driver_memory: str = "1g"
    # Spark's Kafka connector, delta-spark and their dependencies, as local files.
    jars: Sequence[Path] = ()
    # Derby's home (Spark's catalog): a folder of ours, never a shared one such as /tmp/derby;
    # None: a private new temporary folder.
    derby_home: Path | None = None
    # A class-data archive of the driver's classes (streaming.spark.record_class_archive):
    # used when the file exists, else the JVM loads its classes from the jars as usual.
    class_archive: Path | None = None
    # The driver JVM's temporary files (java.io.tmpdir: its copies of the jars, its blocks in
    # local mode): a folder per driver process under this private root, removed once that
    # process is gone (streaming.spark_temp); None: the JVM's default, /tmp.
    temp_root: Path | None = None

    @property
    def delta(self) -> bool:
        """Whether delta-spark is among the jars (its SQL extension is then enabled)."""
        return any(jar.name.startswith("delta-spark") for jar in self.jars)


@dataclass(frozen=True)
class Limits:
    """What makes a record bad besides the contract's types."""

    max_bytes: int = 65_536
    max_future: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Topics:
    """The topics the ingest reads (sales, plans, stores) and the one it writes letters to."""

    sales: str = "pos.sales"
    plans: str = "pos.plans"
    stores: str = "pos.stores"
    dlq: str = "pos.sales.dlq"

    @property
    def read(self) -> tuple[str, ...]:
        """What the query subscribes to, sales first (an older checkpoint of the Python
        source holds the sales topic's offsets alone)."""
        return tuple(dict.fromkeys((self.sales, self.plans, self.stores)))


# Spark's Kafka consumer keeps what one poll returns: Kafka's default of 500 records was
# 500 MB of ~1 MB records per task (a compressed fetch of 1 MB held hundreds of them), in a
# heap the local executors share with the driver.
JAVA_CONSUMER = {"max.poll.records": "100"}


@dataclass(frozen=True)
class SourceConfig:
    """The ingest source: its topics, which implementation, and the Kafka client."""

    topics: tuple[str, ...]
    kafka: KafkaClient
    kind: Literal["auto", "kafka", "python"] = "auto"
    max_events_per_batch: int = 200_000
    # "fail": stop with a message when offsets go backwards or fall below the log start;
    # "earliest": go on from the earliest offset the broker still has.
    on_data_loss: Literal["fail", "earliest"] = "fail"

    def options(self, client: Literal["java", "librdkafka"]) -> dict[str, str]:
        """The source's options for Spark, the Kafka client's prefixed ``kafka.`` (with
        the password: pass them to Spark, whose redaction hides them, and nowhere else)."""
        kafka: Mapping[str, Any] = (
            {**JAVA_CONSUMER, **self.kafka.java()} if client == "java" else self.kafka.librdkafka()
        )
        return {
            **{f"kafka.{key}": str(value) for key, value in kafka.items()},
            "subscribe": ",".join(self.topics),
            "startingOffsets": "earliest",
            "maxOffsetsPerTrigger": str(self.max_events_per_batch),
            "failOnDataLoss": str(self.on_data_loss == "fail").lower(),
        }


@dataclass(frozen=True)
class IngestConfig:
    """Everything the ingest query and its foreachBatch pipeline need."""

    kafka: KafkaClient
    delta_dir: Path
    checkpoint: Path  # the query's own checkpoint folder
    topics: Topics = field(default_factory=Topics)
    source_kind: Literal["auto", "kafka", "python"] = "auto"
    on_data_loss: Literal["fail", "earliest"] = "fail"
    trigger_seconds: float = 1.0
    max_events_per_batch: int = 200_000
    # The most bytes of Kafka keys and values one micro-batch brings into the driver at once.
    max_batch_bytes: int = 64 * 1024 * 1024
    limits: Limits = field(default_factory=Limits)
    dedup_window_days: int = 3
    compact_every_batches: int = 50
    compact_every_hours: float = 1.0  # also compact once this long passed (rare batches)
    vacuum_retention_hours: float = 24.0
    spark: SparkConfig = field(default_factory=SparkConfig)

    @property
    def source(self) -> SourceConfig:
        return SourceConfig(
            topics=self.topics.read,
            kafka=self.kafka,
            kind=self.source_kind,
            max_events_per_batch=self.max_events_per_batch,
            on_data_loss=self.on_data_loss,
        )
