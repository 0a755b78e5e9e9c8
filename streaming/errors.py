"""The root of every error raised by :mod:`streaming`."""

__all__ = ["IngestError", "KafkaSourceError", "StreamingError", "TableError"]


class StreamingError(Exception):
    """Base of the streaming side's errors; the message says what to do."""


class KafkaSourceError(StreamingError):
    """Reading from Kafka failed; Spark retries the batch."""


class TableError(StreamingError):
    """A Delta table could not be read or written."""


class IngestError(StreamingError):
    """The ingest query could not start or stopped with an error."""
