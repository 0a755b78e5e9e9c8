"""The root of every error raised by :mod:`retrain`, and the outage under it."""

from typing import Any

__all__ = ["InfrastructureError", "RetrainError"]


class RetrainError(Exception):
    """Base of the retrain side's errors; the message says what to do."""


class InfrastructureError(RetrainError):
    """A system the retrain depends on failed, not the series' own model: MLflow, the Optuna
    storage, a Delta read, Ray (a worker, node or object lost, a task that stopped answering),
    Kafka. The coordinator retries the series with a bounded backoff until the system is back,
    and the failure never counts toward the series' poison.

    ``system`` names what failed, for the status and the logs.
    """

    def __init__(self, message: str, system: str = "") -> None:
        super().__init__(message)
        self.system = system

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised inside Ray tasks: rebuilt from its pickle with its system.
        return (type(self), (str(self), self.system))
