"""Waves on a three-node Ray cluster: a head with no CPUs and worker nodes, each its own
``ray start`` process with a loopback address of its own (127.0.0.2 for the head, 127.0.0.3
and up for the workers; free ports; started one after the other; stopped by pid). Own
addresses also keep Ray from rewriting 127.0.0.1 to the machine's outward address, which
it does for a worker node joining a head there.

This module's tests join that cluster instead of the session's head (a process joins one
cluster at a time): the fixture leaves Ray and re-joins nothing; the next test that needs the
session's head joins it again.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import parse_forecast
from shelfcast.embedded import RAY_NODE_ENV, free_port, ray_node_command, stop_process
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings
from tests.support.retrain import RETRAIN_FAST, START
from tests.support.series import demand, write_daily
from tests.support.topics import read_topic
from tests.support.wait import wait_for, wait_for_ray_node

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOST = "127.0.0.2"
# Series, and a slower fit than the other tests' (more trials): a wave lasts long enough for
# a node to die or join while it runs.
SERIES = [(f"S{n}", "I1") for n in range(12)]  # a node joining mid-wave needs them all
FEW = SERIES[:8]
QUICK = {**RETRAIN_FAST, "retrain_max_attempts": 3}  # a task killed with its node is one attempt
SLOW = {**QUICK, "retrain_cold_trials": 12}
# A node killed without a word is declared dead after ~3 s (Ray's default is ~15 s).
HEALTH = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "1000",
}


class Cluster:
    """The head and the worker nodes this module started, by name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = f"{HOST}:{free_port()}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.joined: dict[str, float] = {}
        self.count = 0
        # Ray's sessions and its 'current cluster' file, here rather than in the shared
        # /tmp/ray, where a later plain ray.init() would find this cluster long gone. Short:
        # Ray's socket paths under it have at most 107 bytes.
        self.temp = Path(tempfile.mkdtemp(prefix="sc-ray-"))

    def _start(self, name: str, command: list[str], **env: str) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **RAY_NODE_ENV, **HEALTH, **env},
        )
        log.close()

    def start_head(self) -> None:
        port = self.address.rpartition(":")[2]
        memory = ("--object-store-memory", str(100 * 1024 * 1024))
        resources = {"shelfcast_coordinator": 1.0}
        extra = (*memory, "--temp-dir", str(self.temp))
        self._start("head", ray_node_command(HOST, f"--port={port}", 0, resources, True, extra))

    def add_worker(self) -> str:
        """Start one more worker node (1 CPU) and return its name once it has joined."""
        self.count += 1
        name = f"worker{self.count}"
        memory = ("--object-store-memory", str(100 * 1024 * 1024))
        # Every worker offers "pool": a coordinator placed there can move to any of them.
        resources = {name: 1.0, "pool": 1.0}
        host = f"127.0.0.{2 + self.count}"
        command = ray_node_command(host, f"--address={self.address}", 1, resources, False, memory)
        # Off (as loopback_ray_env sets it for this process), 'ray start' refuses to join a
        # worker node.
        self._start(name, command, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1")
        wait_for(lambda: self.node_id(name) is not None, 90)
        self.joined[name] = time.time()
        return name

    def node_id(self, name: str) -> str | None:
        import ray

        for node in ray.nodes():  # type: ignore[no-untyped-call]
            if node["Alive"] and name in node["Resources"]:
                return str(node["NodeID"])
        return None

    def head_id(self) -> str:
        found = self.node_id("shelfcast_coordinator")
        assert found is not None
        return found

    def alive(self) -> list[str]:
        return [n for n in self.procs if n != "head" and self.procs[n].poll() is None]

    def kill(self, name: str) -> None:
        """The node dies at once: its ``ray start``, raylet and workers, by process group."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def ensure_workers(self, n: int) -> list[str]:
        while len(self.alive()) < n:
            self.add_worker()
        return self.alive()

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            if self.procs[name].poll() is None:
                stop_process(self.procs[name].pid, timeout=3.0)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    import ray

    ray.shutdown()  # leave the session's head; its tests join it again when they need it
    found = Cluster(tmp_path_factory.mktemp("ray-nodes"))
    try:
        found.start_head()
        wait_for_ray_node(found.procs["head"], found.root / "head.log")
        ray.init(
            address=found.address,
            log_to_driver=False,
            namespace="multinode",
            _node_ip_address=HOST,
        )
        found.ensure_workers(2)  # one after the other: raylets starting together race for ports
        yield found
    finally:
        ray.shutdown()
        found.stop()


@pytest.fixture
def on_cluster(
    cluster: Cluster, make_settings: Callable[..., Settings]
) -> Iterator[Callable[..., Settings]]:
    """Settings on the three-node cluster; the coordinators they create are killed after."""
    import ray

    from retrain.cluster.client import COORDINATOR

    made: list[Settings] = []

    def make(**overrides: Any) -> Settings:
        settings = make_settings(ray_address=cluster.address, **{**QUICK, **overrides})
        write_daily(settings, {k: demand(200, seed=n) for n, k in enumerate(SERIES)}, START)
        made.append(settings)
        return settings

    yield make
    for settings in made:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(COORDINATOR, namespace=settings.ray_namespace))


def forecasts_per_series(settings: Settings, expect: int) -> Counter[str]:
    found = read_topic(settings, settings.topic_forecasts, expect=expect)
    return Counter(parse_forecast(m.value()).key for m in found)


def done_news(actor: Any) -> list[dict[str, Any]]:
    import ray

    return [u for u in ray.get(actor.peek_updates.remote()) if u["status"] == "done"]


def test_a_wave_spreads_over_both_nodes_and_one_killed_mid_wave_leaves_one_forecast_each(
    cluster: Cluster, on_cluster: Callable[..., Settings]
) -> None:
    """The coordinator stays on the head (its default placement) whichever worker dies; the
    task the dead node was running fails and is retried on the other."""
    import ray

    from retrain.cluster.client import coordinator

    victim, survivor = cluster.ensure_workers(2)[:2]
    settings = on_cluster()
    actor = coordinator(retrain_config(settings))
    wave = ray.get(actor.submit.remote([(s, i, 0.0) for s, i in FEW], 1))
    victim_id = cluster.node_id(victim)
    wait_for(lambda: any(u["node"] == victim_id for u in done_news(actor)), 120)
    cluster.kill(victim)
    wait_for(lambda: ray.get(actor.wave.remote(wave["wave_id"]))["finished_at"] is not None, 240)

    summary = ray.get(actor.wave.remote(wave["wave_id"]))
    assert (summary["done"], summary["failed"]) == (len(FEW), 0)
    assert ray.get(actor.status.remote())["node_id"] == cluster.head_id()
    per_series = forecasts_per_series(settings, len(FEW))
    assert len(per_series) == len(FEW) and set(per_series.values()) == {1}, per_series
    nodes = Counter(u["node"] for u in done_news(actor))
    assert set(nodes) == {victim_id, cluster.node_id(survivor)}, nodes  # both ran series


def test_a_node_added_mid_wave_gets_work_within_ten_seconds(
    cluster: Cluster, on_cluster: Callable[..., Settings]
) -> None:
    import ray

    from retrain.cluster.client import coordinator

    cluster.ensure_workers(1)
    settings = on_cluster(**SLOW)  # slower series: the wave outlasts the node's start
    actor = coordinator(retrain_config(settings))
    ray.get(actor.submit.remote([(s, i, 0.0) for s, i in SERIES], 1))
    wait_for(lambda: len(done_news(actor)) >= 1, 120)
    added = cluster.add_worker()
    added_id, joined = cluster.node_id(added), cluster.joined[added]
    wait_for(lambda: any(u["node"] == added_id for u in done_news(actor)), 240)

    # Handed to Ray when the coordinator saw the new CPU (the task then waits for a worker
    # process to start and import the retrain code on the new node, a few seconds more).
    news = ray.get(actor.peek_updates.remote())
    (first,) = [u for u in done_news(actor) if u["node"] == added_id][:1]
    handed = max(
        u["at"]
        for u in news
        if u["status"] == "running"
        and u["item_id"] == first["item_id"]
        and u["store_id"] == first["store_id"]
        and u["at"] <= first["at"]
    )
    waited = handed - joined
    assert waited <= 10.0, f"work for the new node {waited:.1f} s after it joined"


def test_a_coordinator_lost_with_its_node_comes_back_and_the_command_says_so_in_one_line(
    cluster: Cluster, on_cluster: Callable[..., Settings]
) -> None:
    """Placed by the operator on the workers ("pool"), it dies with its node: Ray starts it
    on the other, and ``shelfcast retrain`` hands it what was not finished."""
    import ray

    from retrain.cluster.client import COORDINATOR, coordinator

    cluster.ensure_workers(2)
    settings = on_cluster(ray_coordinator_resource="pool")
    actor = coordinator(retrain_config(settings))
    home = ray.get(actor.status.remote())["node_id"]
    (victim,) = [w for w in cluster.alive() if cluster.node_id(w) == home]
    env = {
        **os.environ,
        **{f"SHELFCAST_{k.upper()}": str(v) for k, v in QUICK.items()},
        "SHELFCAST_RAY_ADDRESS": settings.ray_address,
        "SHELFCAST_RAY_NAMESPACE": settings.ray_namespace,
        "SHELFCAST_RAY_COORDINATOR_RESOURCE": "pool",
        "SHELFCAST_TOPIC_FORECASTS": settings.topic_forecasts,
    }
    command = [
        sys.executable,
        "-m",
        "shelfcast.cli",
        "retrain",
        "--data-dir",
        str(settings.data_dir),
        "--bootstrap",
        settings.bootstrap_servers,
        "--series",
        *[f"{s}|{i}" for s, i in FEW],
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(done_news(actor)) >= 2, 120)
        cluster.kill(victim)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    lost = [line for line in text.splitlines() if "lost mid-wave" in line]
    assert len(lost) == 1 and "submitted to it again" in lost[0], text
    assert f"done {len(FEW)}" in out.decode()
    again = ray.get_actor(COORDINATOR, namespace=settings.ray_namespace)
    assert ray.get(again.status.remote())["node_id"] != home
    per_series = forecasts_per_series(settings, len(FEW))
    assert set(per_series) == {f"{s}|{i}" for s, i in FEW}
