"""The stack a scale run needs, on loopback, every process stopped by pid at the end.

- Kafka: the embedded Apache Kafka broker.
- Ray: ``local`` (one head with the machine's CPUs, as ``shelfcast up``) or ``multinode`` (a
  head with no CPUs that hosts the coordinator, and two worker nodes of one CPU each, each
  its own ``ray start`` on an address of its own, as tests/retrain/cluster/test_multinode.py).
- Spark: ``local`` (``local[2,4]`` inside the service) or ``standalone`` (a master and a worker
  of 2 cores started from pyspark's own jars, as tests/streaming/test_standalone.py).
- The service: ``shelfcast run`` in its own process, configured by ``SHELFCAST_*`` variables
  only, as an operator starts it; its output in ``<data dir>/service.log``.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain.cluster.client import loopback_ray_env
from shelfcast.embedded import (
    RAY_NODE_ENV,
    free_port,
    ray_node_command,
    start_broker,
    start_ray,
    stop_process,
    wait_for_port,
)
from shelfcast.settings import Settings, load_settings

__all__ = ["Stack", "env_of", "scale_stack"]


def env_of(overrides: dict[str, Any]) -> dict[str, str]:
    """Settings as the ``SHELFCAST_*`` variables a process of the service reads."""
    return {f"SHELFCAST_{k.upper()}": str(v) for k, v in overrides.items() if v is not None}


@dataclass
class Stack:
    settings: Settings
    overrides: dict[str, Any]
    root: Path
    pids: dict[str, int] = field(default_factory=dict)  # our long-lived processes, by name
    service: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **env_of(self.overrides)}

    def command(self, *args: str, timeout: float | None = None) -> tuple[float, str]:
        """``shelfcast ARGS`` in a process of its own, on these settings: (seconds, output)."""
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "shelfcast.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"shelfcast {' '.join(args)} failed: {done.stderr[-2000:]}")
        return seconds, done.stdout

    def start_service(self) -> int:
        log = (self.settings.data_dir / "service.log").open("ab")
        self.service = subprocess.Popen(
            [sys.executable, "-m", "shelfcast.cli", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self.service.pid

    def stop_service(self) -> None:
        if self.service is not None and self.service.poll() is None:
            stop_process(self.service.pid, timeout=30.0)
        self.service = None


def _start(root: Path, name: str, command: list[str], env: dict[str, str]) -> int:
    log = (root / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    log.close()
    return proc.pid


def _ray_nodes(root: Path, pids: dict[str, int]) -> str:
    """A head with no CPUs (the coordinator's resource) and two worker nodes of one CPU."""
    import ray

    host = "127.0.0.2"
    port = free_port()
    address = f"{host}:{port}"
    env = {**os.environ, **RAY_NODE_ENV}
    memory = ("--object-store-memory", str(300 * 1024 * 1024))
    head = ray_node_command(host, f"--port={port}", 0, {"shelfcast_coordinator": 1.0}, True, memory)
    pids["ray-head"] = _start(root, "ray-head", head, env)
    if not wait_for_port(host, port, 60):
        raise RuntimeError(f"the Ray head did not listen; see {root / 'ray-head.log'}")
    ray.init(address=address, log_to_driver=False, _node_ip_address=host)
    try:
        for n in (1, 2):
            name = f"ray-worker{n}"
            command = ray_node_command(
                f"127.0.0.{2 + n}", f"--address={address}", 1, {name: 1.0}, False, memory
            )
            pids[name] = _start(
                root, name, command, {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
            )
            deadline = time.monotonic() + 90
            while not any(
                node["Alive"] and name in node["Resources"]
                for node in ray.nodes()  # type: ignore[no-untyped-call]
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not join; see {root / (name + '.log')}")
                time.sleep(0.5)
    finally:
        ray.shutdown()
    return address


def _spark_standalone(root: Path, pids: dict[str, int]) -> str:
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_class.parent.parent),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    port, ui, worker_ui = free_port(), free_port(), free_port()
    pids["spark-master"] = _start(
        root,
        "spark-master",
        [
            str(spark_class),
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui),
        ],
        env,
    )
    if not wait_for_port("127.0.0.1", port, 60):
        raise RuntimeError(f"the Spark master did not listen; see {root / 'spark-master.log'}")
    pids["spark-worker"] = _start(
        root,
        "spark-worker",
        [
            str(spark_class),
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
            str(root / "spark-work"),
        ],
        env,
    )
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as answer:
                if json.load(answer).get("aliveworkers"):
                    break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no Spark worker; see {root / 'spark-worker.log'}")
        time.sleep(0.5)
    return f"spark://127.0.0.1:{port}"


@contextlib.contextmanager
def scale_stack(
    data_dir: Path, ray_mode: str, spark_mode: str, **overrides: Any
) -> Iterator[Stack]:
    """Kafka, Ray and Spark as asked; the settings every process of the run shares."""
    loopback_ray_env()
    root = data_dir / "stack"
    root.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "bootstrap_servers": f"127.0.0.1:{free_port()}",
        "ray_address": f"127.0.0.1:{free_port()}",
        **overrides,
    }
    pids: dict[str, int] = {}
    stack: Stack | None = None
    try:
        settings = load_settings(**values)
        pids["broker"] = start_broker(settings).pid
        if ray_mode == "multinode":
            values["ray_address"] = _ray_nodes(root, pids)
        else:
            pids["ray-head"] = start_ray(settings).pid
        if spark_mode == "standalone":
            values["spark_master"] = _spark_standalone(root, pids)
        settings = load_settings(**values)
        stack = Stack(settings, values, root, pids)
        yield stack
    finally:
        import ray

        ray.shutdown()
        if stack is not None:
            stack.stop_service()
        for name in reversed(list(pids)):
            stop_process(pids[name], timeout=10.0)
