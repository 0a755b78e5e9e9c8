"""How the coordinator retries a series."""

from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts before poison, the first retry delay (doubling), and one task's time limit,
    counted from its start. An outage never counts as an attempt: its retries double from the
    same first delay up to ``outage_max_seconds``, for as long as it lasts."""

    max_attempts: int = 3
    backoff_seconds: float = 2.0
    task_timeout_seconds: float = 600.0
    outage_max_seconds: float = 30.0
