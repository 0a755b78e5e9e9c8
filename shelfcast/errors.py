"""The root of every error raised by the :mod:`shelfcast` application layer."""

__all__ = ["ConfigError", "EmbeddedStackError", "KafkaError", "ShelfcastError"]


class ShelfcastError(Exception):
    """Base of the application's errors; the message says what to do."""


class ConfigError(ShelfcastError):
    """A setting is missing or invalid."""


class KafkaError(ShelfcastError):
    """Kafka refused or failed a request."""


class EmbeddedStackError(ShelfcastError):
    """The embedded broker or Ray head could not be started or stopped."""
