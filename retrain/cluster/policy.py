"""How the coordinator retries a series: typed, built once from the application's settings."""

from dataclasses import dataclass
from typing import Any

__all__ = ["RetryPolicy", "policy_from_settings"]


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts before poison, the first retry delay (doubling), and one task's time limit."""

    max_attempts: int = 3
    backoff_seconds: float = 2.0
    task_timeout_seconds: float = 600.0


def policy_from_settings(settings: Any) -> RetryPolicy:
    """From :class:`shelfcast.settings.Settings` (duck-typed: ``retrain`` never imports it)."""
    return RetryPolicy(
        max_attempts=settings.retrain_max_attempts,
        backoff_seconds=settings.retrain_retry_backoff_seconds,
        task_timeout_seconds=settings.retrain_task_timeout_seconds,
    )
