"""Workers made ready before the first series arrives.

A fresh Ray worker spends seconds on its first retrain importing what the task needs
(Prophet with scipy, statsforecast with statsmodels, MLflow), and Ray starts the workers
only when the first tasks are scheduled. :func:`prewarm` starts one short task per CPU
that only imports them, as soon as the coordinator starts: worker start-up and imports
overlap the coordinator's own (its MLflow store, Kafka producer and ``series_state``
read) instead of delaying the first series. Ray keeps idle workers, so later tasks find
the modules loaded.

On each node the first worker imports alone; the node's others wait for it (holding their
CPU, so each stays a worker of its own and no series starts a cold one meanwhile), then
import side by side. On a small machine, where Spark's start and the coordinator's take the
same cores, workers importing side by side each got a fraction of a core and the first
series waited for all of them (2 cores: its worker was ready 2.5-4 s later; ~4 CPU-s of
imports each). They wait on a file lock: Ray gives the CPU of a task that waits in
``ray.wait`` to another task, which then started a cold worker. The lock is one file per user
and node, reused by every start, in a folder only that user may enter
(``<tmp>/shelfcast-<uid>``); it records the last starts whose first import is done.
"""

import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retrain.private_temp import user_temp_folder

__all__ = ["FIRST_WAIT_SECONDS", "lock_path", "prewarm", "warm_imports"]

# How long a worker waits for the node's first one before importing anyway.
FIRST_WAIT_SECONDS = 60.0
# Starts remembered in the lock file (shards start side by side, each with its token).
_KEEP_TOKENS = 64


def warm_imports(token: str | None) -> int:
    """Import what a retrain task imports on its first run; the worker's pid.

    With a ``token`` (one per :func:`prewarm`), the node's first worker imports alone.
    Besides the modules the task names, those its libraries import on first use: MLflow's
    SQLAlchemy stores (with alembic; the default SQLite store and PostgreSQL) when the task
    opens its tracker, cmdstanpy when Prophet builds its first model. Without them the first
    series of a fresh worker spent ~1.4 s more (0.9 s of it on MLflow's store module)."""
    with _first_alone(token):
        import cmdstanpy  # noqa: F401
        import lightgbm  # noqa: F401
        import mlflow.entities
        import mlflow.store.model_registry.sqlalchemy_store
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        import mlforecast  # noqa: F401
        import prophet.serialize  # noqa: F401
        import statsforecast.models  # noqa: F401
        from mlflow import MlflowClient  # noqa: F401

        import retrain.cluster.task
        import retrain.prophet.backend  # a Prophet fit's; the task imports it when it fits
        import retrain.stores.registry  # noqa: F401

    return os.getpid()


@contextmanager
def _first_alone(token: str | None) -> Iterator[None]:
    """The body runs alone in the node's first worker of ``token``, side by side in the
    others once it has run (or after FIRST_WAIT_SECONDS)."""
    path = lock_path() if token else None
    if not token or path is None:
        yield
        return
    with path.open("a+") as lock:
        deadline = time.monotonic() + FIRST_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield  # the first one is stuck: import anyway
                    return
                time.sleep(0.05)
        lock.seek(0)
        done = lock.read().split()
        if token in done:  # another worker went first: side by side now
            fcntl.flock(lock, fcntl.LOCK_UN)
            yield
            return
        try:
            yield
            lock.seek(0)
            lock.truncate()
            lock.write("\n".join([*done[-(_KEEP_TOKENS - 1) :], token]) + "\n")
            lock.flush()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def lock_path() -> Path | None:
    """This user's prewarm lock on this node, in a folder only the user may enter; None when
    that folder is not such a folder (another user made it, or opened it up): no order then."""
    folder = user_temp_folder()
    return None if folder is None else folder / "prewarm.lock"


def prewarm(cpus: int) -> list[Any]:
    """Start ``cpus`` import-only tasks, spread over the cluster's nodes; their refs (keep
    them: the tasks run either way, and a caller may wait on them)."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")(warm_imports)
    token = uuid.uuid4().hex
    return [task.remote(token) for _ in range(max(1, cpus))]
