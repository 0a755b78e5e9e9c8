"""The environment the embedded Ray head and its workers inherit."""

import os

import pytest

from retrain.cluster.client import loopback_ray_env


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
