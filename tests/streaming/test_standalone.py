"""The ingest query on a Spark standalone cluster: a master and a worker started from
pyspark's own jars, executors in JVMs of their own whose Python workers import the installed
package. The exactly-once kill -9 test runs on it."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyspark
import pytest

from shelfcast.embedded import free_port, stop_process, wait_for_port
from shelfcast.settings import Settings
from tests.support.ingest import kill_and_resume

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"


def _start(name: str, args: list[str], log_dir: Path, env: dict[str, str]) -> int:
    log = (log_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [str(SPARK_CLASS), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    log.close()
    return proc.pid


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A standalone master and one worker (2 cores, 2 GB) on loopback; stopped by pid."""
    root = tmp_path_factory.mktemp("spark-cluster")
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_CLASS.parent.parent),
        "SPARK_LOCAL_IP": "127.0.0.1",
        # Executors start Python workers with this interpreter: the installed package.
        "PYSPARK_PYTHON": sys.executable,
    }
    port, ui, worker_ui = free_port(), free_port(), free_port()
    master = _start(
        "master",
        [
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui),
        ],
        root,
        env,
    )
    pids = [master]
    try:
        assert wait_for_port("127.0.0.1", port, 60), (root / "master.log").read_text()
        pids.append(
            _start(
                "worker",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    f"spark://127.0.0.1:{port}",
                    "--host",
                    "127.0.0.1",
                    "--webui-port",
                    str(worker_ui),
                    "--cores",
                    "2",
                    "--memory",
                    "2g",
                    "--work-dir",
                    str(root / "work"),
                ],
                root,
                env,
            )
        )
        deadline = time.monotonic() + 60
        while not _state(ui).get("aliveworkers"):
            assert time.monotonic() < deadline, (root / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        yield {"master": f"spark://127.0.0.1:{port}", "ui": ui, "work": root / "work"}
    finally:
        for pid in reversed(pids):
            stop_process(pid, timeout=10.0)


def _state(ui: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as response:
            state: dict[str, Any] = json.load(response)
            return state
    except (OSError, ValueError):  # not up yet, or still serving its HTML page there
        return {}


def test_exactly_once_across_kill_minus_nine_on_a_standalone_cluster(
    spark_cluster: dict[str, Any],
    make_settings: Callable[..., Settings],
    produce: Callable[..., int],
    tmp_path: Path,
) -> None:
    # The Python source: its reads run in the executors' Python workers.
    settings = make_settings(ingest_source="python", spark_master=spark_cluster["master"])
    kill_and_resume(settings, produce, tmp_path)
    state = _state(spark_cluster["ui"])
    apps = state.get("completedapps", []) + state.get("activeapps", [])
    # Some starts are killed before they register; the first and the last always run.
    assert len(apps) >= 2 and all(app["name"] == "shelfcast-ingest" for app in apps)
    # Executors ran in JVMs of the worker's, and their Python workers read Kafka.
    stderr = list(Path(spark_cluster["work"]).glob("app-*/*/stderr"))
    assert stderr, "no executor ran on the worker"
