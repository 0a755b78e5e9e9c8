"""Retraining small enough for tests."""

from datetime import date
from typing import Any

__all__ = ["IN_PROCESS", "RETRAIN_FAST", "START"]

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

# Coordinators made in the test process itself: not detached, so that Ray keeps their
# workers (imports done) for the next test's coordinator in this process, where a detached
# one's workers end with it (~8 CPU-s of fresh workers and imports a test on 2 cores).
# What outlives a service is tested on `shelfcast run` processes, detached as in production.
IN_PROCESS: dict[str, Any] = {"ray_coordinator_detached": False}

# The first day of the retrain tests' constructed series.
START = date(2023, 1, 1)
