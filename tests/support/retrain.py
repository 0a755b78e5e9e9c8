"""Retraining small enough for tests."""

from datetime import date
from typing import Any

__all__ = ["RETRAIN_FAST", "START"]

# A few trials, short horizon and history, quick retries.
RETRAIN_FAST: dict[str, Any] = {
    "retrain_cold_trials": 4,
    "retrain_warm_trials": 1,
    "retrain_horizon_days": 14,
    "retrain_history_days": 365,
    "retrain_uncertainty_samples": 20,
    "retrain_retry_backoff_seconds": 0.2,
    "retrain_max_attempts": 2,
    "retrain_group_cold_trials": 1,
    "retrain_group_warm_trials": 0,
    "retrain_group_folds": 2,
}

# The first day of the retrain tests' constructed series.
START = date(2023, 1, 1)
