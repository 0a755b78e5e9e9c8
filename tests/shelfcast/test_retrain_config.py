"""The retrain side's config as the application builds it from the settings."""

from pathlib import Path

from pydantic import SecretStr

from retrain.cluster.policy import RetryPolicy
from shelfcast.retrain_config import retrain_config, retry_policy, task_spec
from shelfcast.settings import load_settings


def test_the_policy_takes_the_timeout_attempts_and_backoff_from_the_settings() -> None:
    settings = load_settings(
        retrain_task_timeout_seconds=45, retrain_max_attempts=5, retrain_retry_backoff_seconds=1
    )
    assert retry_policy(settings) == RetryPolicy(5, 1.0, 45.0)
    assert retry_policy(load_settings()).task_timeout_seconds == 600


def test_a_group_retrain_runs_lightgbm_on_the_cpus_its_task_holds() -> None:
    groups = task_spec(load_settings(retrain_group_cpus=2)).groups
    assert (groups.cpus, groups.tune.threads) == (2, 2)
    assert task_spec(load_settings()).groups.tune.threads == 1


def test_the_config_holds_each_secret_where_it_is_used_and_shows_none(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        optuna_storage=SecretStr("postgresql://optuna:s3cr/et@db:5432/optuna"),
        mlflow_tracking_uri=SecretStr("https://user:t0k/en@mlflow.example:5000"),
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="shelfcast",
        kafka_sasl_password=SecretStr("k4fka/pw"),
        ray_coordinator_shards=3,
        ray_coordinator_detached=False,
        ray_namespace="elsewhere",
        mlflow_retries=0,
    )
    config = retrain_config(settings)
    for part in (config, config.ray, config.coordinator, config.coordinator.task):
        shown = repr(part)
        assert not any(secret in shown for secret in ("s3cr/et", "t0k/en", "k4fka/pw"))
    coordinator = config.coordinator
    assert coordinator.publish.producer["sasl.password"] == "k4fka/pw"
    assert coordinator.publish.bootstrap_servers == settings.bootstrap_servers
    assert coordinator.task.optuna_url == "postgresql://optuna:s3cr/et@db:5432/optuna"
    assert coordinator.artifact_dir is None  # the tracking server keeps the artifacts
    assert (config.shards, config.ray.namespace) == (3, "elsewhere")
    assert not config.ray.coordinator_detached
    assert coordinator.task.mlflow_retries == coordinator.task.group_stores().mlflow_retries == 0
    assert retrain_config(load_settings(data_dir=tmp_path)).coordinator.task.mlflow_retries is None
    assert retrain_config(load_settings(data_dir=tmp_path)).ray.coordinator_detached
    assert retrain_config(load_settings(data_dir=tmp_path)).coordinator.artifact_dir == (
        settings.artifact_dir
    )
    assert retrain_config(settings) == config  # compared by the coordinator on configure
