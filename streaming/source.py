"""Choose the Kafka source at the edge: Spark's own connector, or ours over confluent-kafka."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from streaming.errors import IngestError

__all__ = ["SourceConfig", "kafka_stream"]

_COLUMNS = ["key", "value", "topic", "partition", "offset", "timestamp"]


@dataclass(frozen=True)
class SourceConfig:
    """The ingest source: topic, which implementation, and each client's own options.

    The option maps carry credentials, so they stay out of the repr.
    """

    topic: str
    kind: Literal["auto", "kafka", "python"] = "auto"
    max_events_per_batch: int = 200_000
    # "fail": stop with a message when offsets go backwards or fall below the log start;
    # "earliest": go on from the earliest offset the broker still has.
    on_data_loss: Literal["fail", "earliest"] = "fail"
    java_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    librdkafka_options: Mapping[str, str] = field(default_factory=dict, repr=False)


def _common(config: SourceConfig) -> dict[str, str]:
    return {
        "subscribe": config.topic,
        "startingOffsets": "earliest",
        "maxOffsetsPerTrigger": str(config.max_events_per_batch),
        "failOnDataLoss": str(config.on_data_loss == "fail").lower(),
    }


def kafka_stream(spark: SparkSession, config: SourceConfig) -> tuple[DataFrame, str]:
    """The raw records of the topic as a streaming DataFrame, and the format used."""
    if config.kind in ("auto", "kafka"):
        options = {f"kafka.{key}": value for key, value in config.java_options.items()}
        try:
            frame = spark.readStream.format("kafka").options(**options, **_common(config)).load()
            return frame.select(*_COLUMNS), "kafka"
        except AnalysisException as exc:
            if config.kind == "kafka":
                raise IngestError(
                    "SHELFCAST_INGEST_SOURCE=kafka but Spark's Kafka connector is not loaded. "
                    "Run ./scripts/setup (it fetches the jars), or use 'auto' or 'python'."
                ) from exc
    from streaming.kafka_source import KafkaDataSource

    spark.dataSource.register(KafkaDataSource)
    options = {f"kafka.{key}": value for key, value in config.librdkafka_options.items()}
    frame = spark.readStream.format("shelfcast_kafka").options(**options, **_common(config)).load()
    return frame.select(*_COLUMNS), "shelfcast_kafka"
