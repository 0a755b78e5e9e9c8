"""Workers made ready before the first series arrives.

A fresh Ray worker spends seconds on its first retrain importing what the task needs
(Prophet with scipy, statsforecast with statsmodels, MLflow), and Ray starts the workers
only when the first tasks are scheduled. :func:`prewarm` starts one short task per CPU
that only imports them, as soon as the coordinator starts: worker start-up and imports
overlap the coordinator's own (its MLflow store, Kafka producer and ``series_state``
read) instead of delaying the first series. Ray keeps idle workers, so later tasks find
the modules loaded.
"""

import os
from typing import Any

__all__ = ["prewarm", "warm_imports"]


def warm_imports() -> int:
    """Import what a retrain task imports on its first run; the worker's pid."""
    import mlflow.entities  # noqa: F401
    import prophet.serialize  # noqa: F401
    import statsforecast.models  # noqa: F401
    from mlflow import MlflowClient  # noqa: F401

    import retrain.registry
    import retrain.task  # noqa: F401

    return os.getpid()


def prewarm(cpus: int) -> list[Any]:
    """Start ``cpus`` import-only tasks, spread over the cluster's nodes; their refs (keep
    them: the tasks run either way, and a caller may wait on them)."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")(warm_imports)
    return [task.remote() for _ in range(max(1, cpus))]
