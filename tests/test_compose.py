"""docker-compose.yml cannot start here (no Docker engine): check its wiring statically."""

import re
from pathlib import Path
from typing import Any

import pytest

from shelfcast.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
NOT_FIELDS = {"SHELFCAST_CONFIG", "SHELFCAST_SECRETS_DIR"}


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), (name, image)
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")


def test_the_parts_the_issue_asks_for_are_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {
        "kafka",
        "spark-master",
        "spark-worker",
        "ray-head",
        "ray-worker",
        "mlflow",
        "mlflow-db",
        "optuna-db",
        "shelfcast",
    } <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "postgresql://" in " ".join(services["mlflow"]["command"])


def test_every_shelfcast_variable_is_a_setting(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    seen = 0
    for service in compose["services"].values():
        for key in service.get("environment", {}):
            if key.startswith("SHELFCAST_") and key not in NOT_FIELDS:
                assert key.removeprefix("SHELFCAST_").lower() in fields, key
                seen += 1
    assert seen > 10


def test_the_service_environment_validates(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose["services"]["shelfcast"]["environment"]
    for key, value in env.items():
        value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
        monkeypatch.setenv(key, value)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    monkeypatch.setenv("SHELFCAST_SECRETS_DIR", str(secrets))
    for secret in compose["services"]["shelfcast"]["secrets"]:
        (secrets / secret["target"]).write_text("s3cret-" + secret["source"])
    settings = load_settings()
    assert settings.spark_master == "spark://spark-master:7077"
    assert settings.ray_address == "ray-head:6379" and not settings.embedded_ray
    assert settings.optuna_storage is not None
    assert settings.optuna_storage.get_secret_value() == "s3cret-optuna_storage"
    assert settings.kafka_sasl_password is not None
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_healthchecks_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, cond in service.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            assert cond["condition"] == "service_healthy", (name, dep)
    needs = set(services["shelfcast"]["depends_on"])
    assert {"kafka", "spark-master", "ray-head", "mlflow", "optuna-db"} <= needs


def test_ports_and_volumes_are_wired(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {
        name: {int(p.split(":")[-2]) for p in service.get("ports", [])}
        for name, service in services.items()
    }
    assert 5000 in published["mlflow"] and 9464 in published["shelfcast"]
    # Internal by default, on the host's loopback at most; never Kafka or Ray's dashboard.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert not published["kafka"] and not published["ray-head"]
    assert "0.0.0.0" not in services["ray-head"]["command"]
    # No password in a command line: MLflow reads its store URI from the environment.
    mlflow = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri" not in mlflow and "MLFLOW_BACKEND_STORE_URI=" in mlflow
    env = services["shelfcast"]["environment"]
    assert env["SHELFCAST_METRICS_PORT"] == "9464"
    # The console: on the host's loopback, read-only in its container without a token.
    assert 8470 in published["shelfcast"] and env["SHELFCAST_CONSOLE_PORT"] == "8470"
    assert "SHELFCAST_CONSOLE_TOKEN" not in env
    assert env["SHELFCAST_BOOTSTRAP_SERVERS"] == "kafka:9092"
    declared = set(compose["volumes"])
    used = set()
    for service in services.values():
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            used.add(source)
            if source == "shelfcast-data":
                assert target == "/data"
    assert used == declared
    # Everyone who reads or writes Delta tables, checkpoints or studies shares the data volume.
    for name in ("shelfcast", "spark-worker", "ray-head", "ray-worker", "mlflow"):
        assert "shelfcast-data:/data" in services[name]["volumes"], name
    for name in ("shelfcast", "ray-head", "ray-worker"):
        assert {s["source"] for s in services[name]["secrets"]} <= set(compose["secrets"])


def test_dockerfile_pins_its_base_and_drops_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(re.search(r":\d+\.\d+\.\d+", base) for base in bases)
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "-c constraints.txt" in text


def _pom_version(pom: str, artifact: str) -> str:
    text = (ROOT / "scripts" / "jars" / pom).read_text()
    found = re.search(rf"<artifactId>{re.escape(artifact)}</artifactId>\s*<version>([^<]+)", text)
    assert found, (pom, artifact)
    return found.group(1)


def test_compose_runs_the_versions_and_jars_the_embedded_stack_runs(
    compose: dict[str, Any],
) -> None:
    """Same Kafka as the embedded broker; Spark nodes on the Shelfcast image, whose pyspark is
    the pinned one and whose jars come from the same script and poms as scripts/setup."""
    kafka = _pom_version("kafka-broker.pom.xml", "kafka_2.13")
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{kafka}"
    pins = dict(
        line.split("==") for line in (ROOT / "constraints.txt").read_text().split() if "==" in line
    )
    spark = _pom_version("spark.pom.xml", "spark-sql-kafka-0-10_2.13")
    assert pins["pyspark"] == spark
    image = compose["services"]["shelfcast"]["image"]
    for name in ("spark-master", "spark-worker", "ray-head", "ray-worker"):
        assert compose["services"][name]["image"] == image, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY scripts/jars scripts/jars" in dockerfile
    assert "./scripts/fetch-jars" in dockerfile
    assert "./scripts/fetch-jars" in (ROOT / "scripts" / "setup").read_text()
    assert "SHELFCAST_JARS_DIR=/opt/shelfcast/jars" in dockerfile


def test_the_ray_head_advertises_where_the_coordinator_goes(compose: dict[str, Any]) -> None:
    """The coordinator asks for the resource its setting names; only the head offers it."""
    import json

    resource = Settings.model_fields["ray_coordinator_resource"].default

    def advertised(name: str) -> dict[str, float]:
        command = compose["services"][name]["command"]
        if "--resources" not in command:
            return {}
        found: dict[str, float] = json.loads(command[command.index("--resources") + 1])
        return found

    assert advertised("ray-head").get(resource, 0) > 0
    assert resource not in advertised("ray-worker")


def test_the_cluster_stores_are_configured_as_the_tests_run_them(compose: dict[str, Any]) -> None:
    """tests/retrain/stores/test_cluster_stores.py runs the stores on real processes: the same
    PostgreSQL major, databases and users, URL scheme, variable and secret names, and MLflow
    server flags as here."""
    from bench.postgres import (
        DATABASES,
        MLFLOW_SERVER_FLAGS,
        MLFLOW_STORE_ENV,
        OPTUNA_SECRET,
        TRACKING_ENV,
        URL_SCHEME,
        postgres_major,
    )

    services = compose["services"]
    major = postgres_major()
    for name in DATABASES:
        db = services[f"{name}-db"]
        repo, _, tag = db["image"].partition(":")
        assert repo == "postgres" and int(tag.split(".")[0]) == major, (db["image"], major)
        assert db["environment"]["POSTGRES_USER"] == db["environment"]["POSTGRES_DB"] == name
    mlflow = " ".join(services["mlflow"]["command"])
    assert f'{MLFLOW_STORE_ENV}="{URL_SCHEME}://mlflow:' in mlflow
    assert "@mlflow-db:5432/mlflow" in mlflow and "exec mlflow server" in mlflow
    assert all(flag in mlflow for flag in MLFLOW_SERVER_FLAGS), mlflow
    env = services["shelfcast"]["environment"]
    assert env[TRACKING_ENV].startswith("http://mlflow:")
    for name in ("shelfcast", "ray-head", "ray-worker"):
        targets = {s["target"] for s in services[name]["secrets"]}
        assert OPTUNA_SECRET in targets, name
        assert services[name]["environment"]["SHELFCAST_SECRETS_DIR"] == "/run/secrets"
    # The README's recipe writes that secret with the same scheme, user and database.
    readme = (ROOT / "README.md").read_text()
    written = re.search(rf"printf '([^']*)' > secrets/{OPTUNA_SECRET}", readme)
    assert written, "README: no recipe for the Optuna secret"
    assert re.fullmatch(rf"{URL_SCHEME}://optuna:[^@]+@optuna-db:5432/optuna", written.group(1))
