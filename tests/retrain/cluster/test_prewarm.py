"""Prewarmed workers: the retrain's imports are loaded before the first series (real Ray)."""

from collections.abc import Callable

import pytest

from retrain.cluster.client import connect
from retrain.cluster.prewarm import prewarm
from shelfcast.retrain_config import ray_config
from shelfcast.settings import Settings

pytestmark = pytest.mark.integration


def loaded() -> tuple[int, bool]:
    import os
    import sys

    needed = (
        "statsforecast.models",
        "prophet.serialize",
        "mlflow.entities",
        "retrain.cluster.task",
    )
    return os.getpid(), all(name in sys.modules for name in needed)


def test_prewarmed_workers_serve_the_next_tasks_with_the_imports_loaded(
    make_settings: Callable[..., Settings], ray_address: str
) -> None:
    import ray

    connect(ray_config(make_settings(ray_address=ray_address)))
    warmed = set(ray.get(prewarm(2), timeout=120))
    assert len(warmed) == 2  # one worker per CPU
    probe = ray.remote(num_cpus=1)(loaded)
    found = ray.get([probe.remote() for _ in range(4)], timeout=60)
    # Ray hands the next tasks to idle workers: the prewarmed ones have the imports.
    assert any(pid in warmed for pid, _ in found)
    assert all(ok for pid, ok in found if pid in warmed)
