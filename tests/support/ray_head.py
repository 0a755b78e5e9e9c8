"""A Ray head for the tests, started the embedded way."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from shelfcast.embedded import ManagedProcess, free_port, start_ray, stop_all
from shelfcast.errors import EmbeddedStackError
from shelfcast.settings import Settings, load_settings

__all__ = ["running_head", "start_head", "stop_head"]

# Idle workers a test head keeps (Ray's default: one per CPU). A `shelfcast run` test's job
# starts workers of its own, which pushed the test process's warm ones over Ray's limit, and
# Ray ended them: the next in-process test imported the retrain stack again. With 6, the
# workers started over test_service.py and test_coordinator.py went from 70 to 50.
IDLE_WORKERS = 6


def start_head(settings: Settings) -> ManagedProcess:
    """``start_ray(settings)``, once more if it fails: 'ray start' gives its node 30 s to
    register, and once ran over them on 2 cores busy starting the other worker's broker and
    JVMs. A second failure stands."""
    # Only the head's processes get it (they read it at start), not what the tests start later.
    limit = os.environ.get("RAY_num_workers_soft_limit", str(IDLE_WORKERS))
    with mock.patch.dict(os.environ, {"RAY_num_workers_soft_limit": limit}):
        try:
            return start_ray(settings)
        except EmbeddedStackError:
            return start_ray(settings)


def stop_head(settings: Settings) -> None:
    """Stop the head :func:`start_head` started on ``settings``, as 'shelfcast down' does:
    with the private temp folder it made when its data dir's path was too long for Ray."""
    stop_all(settings)


@contextmanager
def running_head(data_dir: Path, cpus: int) -> Iterator[str]:
    """A head of ``cpus`` CPUs on a free loopback port, its address; at the end this process
    leaves it (if it joined) and the head is stopped by pid."""
    settings = load_settings(
        data_dir=data_dir, ray_address=f"127.0.0.1:{free_port()}", ray_num_cpus=cpus
    )
    start_head(settings)
    try:
        yield settings.ray_address
    finally:
        import ray

        ray.shutdown()
        stop_head(settings)
