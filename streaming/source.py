"""Choose the Kafka source at the edge: Spark's own connector, or ours over confluent-kafka."""

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from streaming.config import SourceConfig
from streaming.errors import IngestError

__all__ = ["SourceConfig", "kafka_stream"]

_COLUMNS = ["key", "value", "topic", "partition", "offset", "timestamp"]


def kafka_stream(spark: SparkSession, config: SourceConfig) -> tuple[DataFrame, str]:
    """The raw records of the topics as a streaming DataFrame, and the format used."""
    if config.kind in ("auto", "kafka"):
        try:
            frame = spark.readStream.format("kafka").options(**config.options("java")).load()
            return frame.select(*_COLUMNS), "kafka"
        except AnalysisException as exc:
            if config.kind == "kafka":
                raise IngestError(
                    "SHELFCAST_INGEST_SOURCE=kafka but Spark's Kafka connector is not loaded. "
                    "Run ./scripts/setup (it fetches the jars), or use 'auto' or 'python'."
                ) from exc
    from streaming.kafka_source import KafkaDataSource

    spark.dataSource.register(KafkaDataSource)
    options = config.options("librdkafka")
    frame = spark.readStream.format("shelfcast_kafka").options(**options).load()
    return frame.select(*_COLUMNS), "shelfcast_kafka"
