"""Prometheus (Debian's, run natively: no container engine here) scrapes the real service's
metrics endpoint as docker-compose.yml wires it: the service's metrics settings from the
compose file, Prometheus' scrape job from deploy/prometheus/prometheus.yml. The compose
network's name for the service (``shelfcast``) becomes 127.0.0.2, a loopback address other
than the one a loopback-only server binds, so a server another container cannot reach is
not reached here either. Every metric the Grafana dashboard reads must be in what it scraped,
and the service's healthcheck probes that same address."""

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shelfcast.embedded import free_port, stop_process
from shelfcast.settings import Settings
from tests.support.dashboard import DASHBOARD, expressions, used_names
from tests.support.events import history
from tests.support.topics import forecast_keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# The compose network's address of the shelfcast container, as seen from Prometheus'.
NETWORK_ADDRESS = "127.0.0.2"


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], str]]:
    """Start Prometheus on a config; returns its API's base URL. Stopped by pid after."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("No prometheus binary: run ./scripts/setup (it installs Debian's).")
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: dict[str, Any]) -> str:
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/-/ready", timeout=2).close()
                return base
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
                time.sleep(0.2)

    yield start
    for proc in procs:
        stop_process(proc.pid)


def _target(job: dict[str, Any]) -> tuple[str, int]:
    (target,) = job["static_configs"][0]["targets"]
    host, _, port = target.rpartition(":")
    return host, int(port)


def test_prometheus_scrapes_what_the_dashboard_reads_from_the_service_as_compose_wires_it(
    compose: dict[str, Any],
    service: Callable[..., Settings],
    produce: Callable[..., int],
    prometheus: Callable[[dict[str, Any]], str],
) -> None:
    env = compose["services"]["shelfcast"]["environment"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "shelfcast"]
    host, port = _target(job)
    assert (host, port) == ("shelfcast", int(env["SHELFCAST_METRICS_PORT"]))
    # The port is a free one here (the machine is shared); everything else as compose has it.
    local_port = free_port()
    settings = service(metrics_port=local_port, metrics_host=env["SHELFCAST_METRICS_HOST"])
    produce(settings, history("S1", "P", days=40))
    forecast_keys(settings, expect=1, timeout=300)  # every metric family has moved by now

    job["static_configs"][0]["targets"] = [f"{NETWORK_ADDRESS}:{local_port}"]
    config["global"]["scrape_interval"] = "1s"  # the test's only change: not 15 s per look
    base = prometheus(config)

    def names() -> set[str]:
        found = _get(base + "/api/v1/label/__name__/values")["data"]
        return {n for n in found if n.startswith("shelfcast_")}

    deadline = time.monotonic() + 60
    while not names():
        targets = _get(base + "/api/v1/targets")["data"]["activeTargets"]
        assert time.monotonic() < deadline, f"Prometheus scraped nothing: {targets}"
        time.sleep(0.5)
    (target,) = _get(base + "/api/v1/targets")["data"]["activeTargets"]
    assert target["health"] == "up", target
    assert target["labels"]["job"] == "shelfcast"
    scraped = names()
    dashboard = json.loads(DASHBOARD.read_text())
    wanted = {name for expr in expressions(dashboard) for name in used_names(expr)}
    assert wanted and not wanted - scraped, f"not scraped: {sorted(wanted - scraped)}"
    published = _get(base + "/api/v1/query?query=shelfcast_forecasts_published_total")
    assert float(published["data"]["result"][0]["value"][1]) >= 1

    # The healthcheck probes the address Prometheus scrapes, not the container's loopback.
    test = compose["services"]["shelfcast"]["healthcheck"]["test"]
    probe = " ".join(test)
    assert f"http://{host}:{port}/metrics" in probe
    code = test[-1].replace(f"{host}:{port}", f"{NETWORK_ADDRESS}:{local_port}")
    assert test[1:3] == ["python", "-c"]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_the_healthcheck_probes_the_scraped_address(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "shelfcast"]
    host, port = _target(job)
    test = " ".join(compose["services"]["shelfcast"]["healthcheck"]["test"])
    assert re.search(rf"http://{host}:{port}{job.get('metrics_path', '/metrics')}\b", test)
    env = compose["services"]["shelfcast"]["environment"]
    assert env["SHELFCAST_METRICS_HOST"] in ("0.0.0.0", "::")
