"""Choose the Kafka source at the edge: Spark's own connector when present, else ours."""

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from shelfcast.kafka import client_config
from shelfcast.settings import Settings
from streaming.errors import IngestError

__all__ = ["kafka_stream"]

_COLUMNS = ["key", "value", "topic", "partition", "offset", "timestamp"]


def _options(settings: Settings) -> dict[str, str]:
    options = {f"kafka.{key}": str(value) for key, value in client_config(settings).items()}
    options["subscribe"] = settings.topic_pos_sales
    options["startingOffsets"] = "earliest"
    options["maxOffsetsPerTrigger"] = str(settings.ingest_max_events_per_batch)
    return options


def kafka_stream(spark: SparkSession, settings: Settings) -> tuple[DataFrame, str]:
    """The raw records of ``pos.sales`` as a streaming DataFrame, and the format used."""
    options = _options(settings)
    if settings.ingest_source in ("auto", "kafka"):
        try:
            reader = spark.readStream.format("kafka").options(**options)
            frame = reader.option("failOnDataLoss", "true").load()
            return frame.select(*_COLUMNS), "kafka"
        except AnalysisException as exc:
            if settings.ingest_source == "kafka":
                raise IngestError(
                    "SHELFCAST_INGEST_SOURCE=kafka but Spark's Kafka connector is not on the "
                    "classpath. Add spark-sql-kafka-0-10 to spark.jars.packages, or use 'auto'."
                ) from exc
    options["trustWatermarks"] = str(settings.kafka_trust_watermarks).lower()
    frame = spark.readStream.format("shelfcast_kafka").options(**options).load()
    return frame.select(*_COLUMNS), "shelfcast_kafka"
