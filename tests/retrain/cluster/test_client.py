"""The environment the embedded Ray head and its workers inherit, and joining a head that was
started another way."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from retrain.cluster.client import loopback_ray_env
from shelfcast.embedded import RAY_NODE_PORTS, free_port, free_ports, stop_process
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings, load_settings
from tests.support.ray_head import start_head, stop_head
from tests.support.wait import wait_for, wait_for_ray_node


def test_usage_reports_are_off_unless_the_environment_turns_them_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    loopback_ray_env()

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    loopback_ray_env()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


def _join(
    address: str, show: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A process of its own that joins the head at ``address`` as the service does and
    prints ``shows <show>``, evaluated there."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, ray\n"
            "from retrain.cluster.client import connect\n"
            "from retrain.config import RayConfig\n"
            "connect(RayConfig(sys.argv[1]))\n"
            f"print('shows', {show})\n",
            address,
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_token_left_in_the_home_by_a_plain_ray_init_does_not_lock_the_embedded_head_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any ``ray.init()`` that starts a local Ray saves a token in ``~/.ray/auth_token``;
    with ``RAY_AUTH_MODE`` unset, a head started later turned token auth on from it, and
    drivers, which do not, were refused (``InvalidAuthToken``) for good."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a" * 64)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    settings = load_settings(
        data_dir=tmp_path / "d", ray_address=f"127.0.0.1:{free_port()}", ray_num_cpus=1
    )
    start_head(settings)  # sets the mode for itself and what it starts
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        joined = _join(settings.ray_address, "ray.get(ray.remote(lambda: 1).remote())", env)
        assert "shows 1" in joined.stdout, joined.stdout + joined.stderr[-3000:]
    finally:
        stop_head(settings)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_head_started_the_plain_way_is_joined_by_its_loopback_address(tmp_path: Path) -> None:
    """``ray start --head --port P`` (no --node-ip-address) registers the node under the
    machine's outward address; SHELFCAST_RAY_ADDRESS=127.0.0.1:P joins it as ``ray.init``
    does. It failed with "Cannot join the Ray cluster", after a minute."""
    port = free_port()
    chosen = free_ports(len(RAY_NODE_PORTS), {port})
    pinned = [f"--{name}={p}" for name, p in zip(RAY_NODE_PORTS, chosen, strict=True)]
    temp = Path(tempfile.mkdtemp(prefix="shelfcast-ray-", dir="/tmp"))  # socket paths: short
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--num-cpus=1",
        '--resources={"shelfcast_coordinator": 1}',
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        *pinned,  # other heads run on this machine: no port of Ray's defaults
    ]
    with (tmp_path / "head.log").open("ab") as log:
        head = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_ray_node(head, tmp_path / "head.log")
        joined = _join(f"127.0.0.1:{port}", "ray.cluster_resources().get('shelfcast_coordinator')")
        assert "shows 1.0" in joined.stdout, joined.stdout + joined.stderr[-3000:]
    finally:
        stop_process(head.pid, timeout=5)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.integration
def test_a_cluster_that_answers_is_not_left(ray_address: str) -> None:
    """The loss check never leaves a live cluster: a slow coordinator is not a lost head."""
    import ray

    from retrain.cluster.client import connect, leave_if_lost
    from retrain.config import RayConfig

    connect(RayConfig(ray_address))
    assert not leave_if_lost(RayConfig(ray_address))
    assert ray.is_initialized()


def test_joining_where_nothing_listens_fails_at_once_with_what_to_do() -> None:
    """Ray itself waits minutes on a head that is not there (a service rejoining a lost head
    would hang in it)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from retrain.cluster.client import connect\n"
            "from retrain.config import RayConfig\n"
            "connect(RayConfig(sys.argv[1]))\n",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "nothing listens there" in done.stderr
    assert "shelfcast up" in done.stderr


@pytest.mark.integration
def test_a_coordinator_that_is_not_detached_lives_as_long_as_the_process_that_made_it(
    retrain_settings: Callable[..., Settings],
) -> None:
    """Ray ends an actor that is not detached when its maker drops the handle it made it
    with: the client keeps that handle (a handle found later by name does not count), and
    the actor ends with the process."""
    import gc

    import ray

    from retrain.cluster.client import coordinator
    from retrain.cluster.shards import COORDINATOR

    settings = retrain_settings(ray_coordinator_detached=False)
    config = retrain_config(settings)
    coordinator(config)
    coordinator(config)  # found by name: replaces no handle
    gc.collect()
    time.sleep(1.0)  # Ray ends an actor it holds no handle to within milliseconds
    actor = ray.get_actor(COORDINATOR, namespace=settings.ray_namespace)
    assert ray.get(actor.ping.remote(), timeout=30) == "ok"

    # Made by a process of its own, which then ends: the actor ends with it.
    namespace = f"{settings.ray_namespace}-gone"
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys\n"
            "from retrain.cluster.client import coordinator\n"
            "from shelfcast.retrain_config import retrain_config\n"
            "from shelfcast.settings import load_settings\n"
            "coordinator(retrain_config(load_settings(**json.loads(sys.argv[1]))))\n",
            json.dumps(
                {
                    "data_dir": str(settings.data_dir),
                    "bootstrap_servers": settings.bootstrap_servers,
                    "ray_address": settings.ray_address,
                    "ray_namespace": namespace,
                    "ray_coordinator_detached": False,
                }
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-2000:]

    def gone() -> bool:
        try:
            ray.get_actor(COORDINATOR, namespace=namespace)
        except ValueError:
            return True
        return False

    wait_for(gone, timeout=30, what="the coordinator to end with the process that made it")
