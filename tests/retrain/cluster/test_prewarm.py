"""Prewarmed workers: the retrain's imports are loaded before the first series (real Ray)."""

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from shelfcast.settings import Settings

pytestmark = pytest.mark.integration

# The driver runs as a Ray job of its own: a job's workers are its own, so no worker warm from
# an earlier test of this process (Ray hands a finished task's next one to its worker) can
# take both prewarm tasks.
DRIVER = """
import json, os, sys

import ray

from retrain.cluster.client import connect
from retrain.cluster.prewarm import prewarm
from shelfcast.retrain_config import ray_config
from shelfcast.settings import load_settings


def loaded():
    needed = ("statsforecast.models", "prophet.serialize", "mlflow.entities",
              "retrain.cluster.task")
    return os.getpid(), all(name in sys.modules for name in needed)


connect(ray_config(load_settings(ray_address=sys.argv[1], ray_namespace=sys.argv[2])))
warmed = ray.get(prewarm(2), timeout=120)
probe = ray.remote(num_cpus=1)(loaded)
found = ray.get([probe.remote() for _ in range(4)], timeout=60)
print(json.dumps({"warmed": warmed, "found": found}))
"""


def test_prewarmed_workers_serve_the_next_tasks_with_the_imports_loaded(
    make_settings: Callable[..., Settings], two_cpus: str
) -> None:
    settings = make_settings(ray_address=two_cpus)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, two_cpus, settings.ray_namespace],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    warmed = set(result["warmed"])
    assert len(warmed) == 2  # one worker per CPU
    found = [(pid, ok) for pid, ok in result["found"]]
    # Ray hands the next tasks to idle workers: the prewarmed ones have the imports.
    assert any(pid in warmed for pid, _ in found)
    assert all(ok for pid, ok in found if pid in warmed)
