"""The ops metrics stack of docker-compose.yml: Prometheus scrapes the service, Grafana's
provisioned dashboard parses and shows only metrics the service exports (read from its own
registry's exposition, as /metrics serves it), and every exported metric has a panel."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from shelfcast.metrics import Metrics
from tests.support.dashboard import DASHBOARD, expressions, used_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def exported() -> set[str]:
    """Every sample name the service's registry exposes (``_total``, ``_bucket``, ...)."""
    text = generate_latest(Metrics().registry).decode()
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def families() -> set[str]:
    """The metric families the service defines (what one panel or another must show)."""
    return {m.name for m in Metrics().registry.collect()}


def test_the_dashboard_parses_and_reads_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    names = exported()
    assert "shelfcast_events_in_total" in names  # the exposition was read
    exprs = expressions(dashboard)
    assert exprs
    for expr in exprs:
        used = used_names(expr)
        assert used, expr
        unknown = used - names
        assert not unknown, f"{expr!r} reads {sorted(unknown)}, which the service does not export"


def test_every_exported_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    shown = {name for expr in expressions(dashboard) for name in used_names(expr)}
    missing = {
        family
        for family in families()
        if not any(name == family or name.startswith(family + "_") for name in shown)
    }
    assert not missing, f"add a panel for {sorted(missing)} to {DASHBOARD.relative_to(ROOT)}"


def test_panels_use_the_provisioned_data_source(dashboard: dict[str, Any]) -> None:
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {s["uid"] for s in sources if s["type"] == "prometheus"}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_scrapes_the_service_and_grafana_reads_prometheus(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    port = services["shelfcast"]["environment"]["SHELFCAST_METRICS_PORT"]
    configs = compose["configs"]
    for name in ("prometheus", "grafana"):
        for mount in services[name]["configs"]:
            assert (ROOT / configs[mount["source"]]["file"]).is_file(), mount
    prometheus = yaml.safe_load((ROOT / configs["prometheus"]["file"]).read_text())
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    targets = jobs["shelfcast"]["static_configs"][0]["targets"]
    assert targets == [f"shelfcast:{port}"]
    assert jobs["shelfcast"].get("metrics_path", "/metrics") == "/metrics"
    sources = yaml.safe_load((ROOT / configs["grafana-datasources"]["file"]).read_text())
    container_port = services["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert sources["datasources"][0]["url"] == f"http://prometheus:{container_port}"
    # The dashboard file lands where the provider looks for it.
    provider = yaml.safe_load((ROOT / configs["grafana-dashboards"]["file"]).read_text())
    folder = provider["providers"][0]["options"]["path"]
    targets_in_grafana = {m["target"] for m in services["grafana"]["configs"]}
    assert f"{folder}/{DASHBOARD.name}" in targets_in_grafana
    # The admin password is a secret file, never a value in the compose file.
    env = services["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert set(services["grafana"]["secrets"]) <= set(compose["secrets"])
