"""The root of every error raised by :mod:`retrain`."""

__all__ = ["RetrainError"]


class RetrainError(Exception):
    """Base of the retrain side's errors; the message says what to do."""
