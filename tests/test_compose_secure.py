"""docker-compose.secure.yml, the secured profile: checked statically against the base file,
and run natively where the parts run here (no container engine): Kafka from its jars with the
profile's own server.properties, ACL script and admin config; MLflow's basic-auth server with
the profile's ini and the credentials file the service's client reads; a Ray head with token
authentication joined by a driver with and without the token."""

import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from shelfcast.embedded import free_port, ray_node_command, stop_process, wait_for_port
from shelfcast.settings import load_settings
from tests.support.wait import wait_for_ray_node

ROOT = Path(__file__).resolve().parents[1]
SECURE = ROOT / "docker-compose.secure.yml"
KAFKA = ROOT / "deploy" / "kafka" / "secure"
MLFLOW_INI = ROOT / "deploy" / "mlflow" / "basic_auth.ini"
SERVICE_SIDE = ("shelfcast", "ray-head", "ray-worker")


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def secure() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SECURE.read_text())
    return loaded


def _properties(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def _targets(service: dict[str, Any]) -> dict[str, str]:
    """Secret or config target path -> its source, as mounted in the container."""
    found = {}
    for item in service.get("secrets", []) + service.get("configs", []):
        source, target = (
            (item, item)
            if isinstance(item, str)
            else (item["source"], item.get("target", item["source"]))
        )
        found[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return found


# -- statically -----------------------------------------------------------------------------


def test_every_kafka_listener_authenticates_and_nothing_goes_without_an_acl() -> None:
    props = _properties(KAFKA / "server.properties")
    listeners = [entry.split("://")[0] for entry in props["listeners"].split(",")]
    protocols = dict(
        entry.split(":") for entry in props["listener.security.protocol.map"].split(",")
    )
    assert set(listeners) == set(protocols)
    assert all(protocols[name].startswith("SASL_") for name in listeners), protocols
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert "User:shelfcast" not in props["super.users"]
    for name in listeners:
        key = f"listener.name.{name.lower()}.sasl.enabled.mechanisms"
        assert props[key], key
    # No password written in the files: each comes from a mounted secret.
    for path in (KAFKA / "server.properties", KAFKA / "admin.properties"):
        for jaas in re.findall(r'password="([^"]*)"', path.read_text()):
            assert jaas.startswith("${secrets:/run/secrets:"), (path, jaas)


def test_the_acls_cover_every_topic_the_service_uses() -> None:
    """A topic added to the settings and missing here fails ensure_topics under the profile."""
    settings = load_settings()
    topics = {
        getattr(settings, name) for name in type(settings).model_fields if name.startswith("topic_")
    } - {settings.topic_partitions, settings.topic_replication}
    loop = re.search(r"^for topic in (.*); do$", (KAFKA / "acls.sh").read_text(), re.M)
    assert loop is not None
    assert set(loop.group(1).split()) == topics


def test_the_secure_services_mount_what_they_read(
    base: dict[str, Any], secure: dict[str, Any]
) -> None:
    services = secure["services"]
    assert set(services) - {"kafka-acls"} <= set(base["services"])
    declared = {**base["secrets"], **secure["secrets"]}
    configs = {**base.get("configs", {}), **secure["configs"]}
    for name, service in services.items():
        for source in _targets(service).values():
            assert source in declared or source in configs, (name, source)
        for source in configs.values():
            assert (ROOT / source["file"]).is_file(), source
    kafka = _targets(services["kafka"])
    for secret in re.findall(
        r"\$\{secrets:/run/secrets:(\w+)\}", (KAFKA / "server.properties").read_text()
    ):
        assert f"/run/secrets/{secret}" in kafka, secret
    # The broker is formatted with the admin and shelfcast SCRAM users from those secrets
    # (compose reads "$$" as a literal "$").
    command = " ".join(services["kafka"]["command"])
    for user, secret in [
        ("admin", "kafka_admin_password"),
        ("shelfcast", "shelfcast_kafka_sasl_password"),
    ]:
        assert f"name={user},password=$$(cat /run/secrets/{secret})" in command, user
    assert "--command-config /etc/kafka/secure/admin.properties" in " ".join(
        services["kafka"]["healthcheck"]["test"]
    )
    assert services["shelfcast"]["depends_on"]["kafka-acls"]["condition"] == (
        "service_completed_successfully"
    )


def test_ray_nodes_and_the_service_use_token_authentication(secure: dict[str, Any]) -> None:
    import ray

    major, minor = (int(p) for p in ray.__version__.split(".")[:2])
    assert (major, minor) >= (2, 52), "token auth needs Ray 2.52+; see docs/security.md"
    for name in SERVICE_SIDE:
        service = secure["services"][name]
        env = service["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN_PATH"] in _targets(service), name


def test_mlflow_needs_a_user_and_the_service_has_one(secure: dict[str, Any]) -> None:
    mlflow = secure["services"]["mlflow"]
    command = " ".join(mlflow["command"])
    assert "exec mlflow server --app-name basic-auth" in command
    for variable, secret in [
        ("MLFLOW_AUTH_ADMIN_PASSWORD", "mlflow_admin_password"),
        ("MLFLOW_FLASK_SERVER_SECRET_KEY", "mlflow_flask_secret_key"),
    ]:
        assert f'{variable}="$$(cat /run/secrets/{secret})"' in command
        assert f"/run/secrets/{secret}" in _targets(mlflow)
    assert mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"] in _targets(mlflow)
    ini = configparser.ConfigParser()
    ini.read(MLFLOW_INI)
    assert ini["mlflow"]["admin_username"] == "shelfcast"
    assert "admin_password" not in ini["mlflow"]
    # The client reads ~/.mlflow/credentials: the image's user's home.
    home = re.search(r"useradd --create-home --uid \d+ (\w+)", (ROOT / "Dockerfile").read_text())
    assert home
    for name in SERVICE_SIDE:
        assert f"/home/{home.group(1)}/.mlflow/credentials" in _targets(secure["services"][name])


def test_spark_authenticates_on_the_master_the_workers_and_the_driver(
    secure: dict[str, Any],
) -> None:
    for name in ("spark-master", "spark-worker", "shelfcast"):
        service = secure["services"][name]
        conf = service["environment"]["SPARK_CONF_DIR"]
        assert _targets(service)[f"{conf}/spark-defaults.conf"] == "spark_defaults", name


def test_the_secure_service_environment_validates(
    base: dict[str, Any], secure: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **base["services"]["shelfcast"]["environment"],
        **secure["services"]["shelfcast"]["environment"],
    }
    for key, value in env.items():
        monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    monkeypatch.setenv("SHELFCAST_SECRETS_DIR", str(secrets))
    for secret in base["services"]["shelfcast"]["secrets"]:
        (secrets / secret["target"]).write_text("s3cret-" + secret["source"])
    settings = load_settings()
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_username == "shelfcast"
    assert settings.kafka_sasl_password is not None


# -- natively -------------------------------------------------------------------------------


def _password() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    """The profile's secrets, written as docs/security.md says (printf '%s': no newline)."""
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    for name in (
        "kafka_admin_password",
        "kafka_controller_password",
        "shelfcast_kafka_sasl_password",
    ):
        (folder / name).write_text(_password())
    return folder


def _native(path: Path, secrets: Path, ports: dict[str, int], log_dir: Path) -> str:
    """The profile's file with the compose names made local: /run/secrets, kafka:PORT."""
    text = path.read_text().replace("/run/secrets", str(secrets))
    text = text.replace("kafka:9092", f"127.0.0.1:{ports['broker']}")
    text = text.replace("kafka:9093", f"127.0.0.1:{ports['controller']}")
    text = text.replace("BROKER://:9092", f"BROKER://127.0.0.1:{ports['broker']}")
    text = text.replace("CONTROLLER://:9093", f"CONTROLLER://127.0.0.1:{ports['controller']}")
    return text.replace("/var/lib/kafka/data", str(log_dir))


@pytest.mark.integration
def test_kafka_as_the_secure_profile_runs_it(tmp_path: Path, secrets_dir: Path) -> None:
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from shelfcast.jars import broker_classpath, java_binary
    from shelfcast.kafka import client_config, ensure_topics, producer_config

    ports = {"broker": free_port(), "controller": free_port()}
    props = tmp_path / "server.properties"
    props.write_text(_native(KAFKA / "server.properties", secrets_dir, ports, tmp_path / "logs"))
    admin_props = tmp_path / "admin.properties"
    admin_props.write_text(_native(KAFKA / "admin.properties", secrets_dir, ports, tmp_path))
    settings = load_settings(data_dir=tmp_path / "data")
    java, classpath = java_binary(), broker_classpath(settings.jars_dir)
    jvm = [java, "-Xmx256m", "-cp", classpath]
    passwords = {
        name: (secrets_dir / f"{name}").read_text()
        for name in ("kafka_admin_password", "shelfcast_kafka_sasl_password")
    }
    scram = [
        word
        for user, secret in [
            ("admin", "kafka_admin_password"),
            ("shelfcast", "shelfcast_kafka_sasl_password"),
        ]
        for word in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={passwords[secret]}]")
    ]
    formatted = subprocess.run(
        [*jvm, "kafka.tools.StorageTool", "format", "--ignore-formatted",
         f"--cluster-id={uuid.uuid4().hex[:22]}", "-c", str(props),
         *scram],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    log = (tmp_path / "kafka.log").open("wb")
    broker = subprocess.Popen(
        [*jvm, "kafka.Kafka", str(props)], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", ports["broker"], 90), (
            tmp_path / "kafka.log"
        ).read_text()[-3000:]
        bootstrap = f"127.0.0.1:{ports['broker']}"
        stub = tmp_path / "kafka-acls.sh"
        script = Path(__file__).parent / "support" / "kafka_acls_stub.py"
        stub.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
        stub.chmod(0o700)
        done = subprocess.run(
            ["sh", str(KAFKA / "acls.sh")],
            env={**os.environ, "KAFKA_ACLS": str(stub),
                 "BOOTSTRAP": bootstrap, "ADMIN_CONFIG": str(admin_props)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        # The service's own client config, from the settings the profile gives it.
        svc = load_settings(
            data_dir=tmp_path / "data",
            bootstrap_servers=bootstrap,
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="shelfcast",
            kafka_sasl_password=passwords["shelfcast_kafka_sasl_password"],
        )
        ensure_topics(svc)  # its topics: Create is granted
        producer = Producer(producer_config(svc))
        producer.produce(svc.topic_pos_sales, b"v")
        assert producer.flush(30) == 0
        consumer = Consumer({**client_config(svc), "group.id": "shelfcast-status",
                             "auto.offset.reset": "earliest"})  # fmt: skip
        consumer.subscribe([svc.topic_pos_sales])
        deadline, got = time.monotonic() + 60, None
        while got is None and time.monotonic() < deadline:
            got = consumer.poll(1)
        consumer.close()
        assert got is not None and got.error() is None and got.value() == b"v"
        # Nobody gets in without SCRAM, and shelfcast reaches no topic beyond its own.
        anonymous = Consumer({"bootstrap.servers": bootstrap, "group.id": "x"})
        with pytest.raises(KafkaException):
            anonymous.list_topics(timeout=3)
        anonymous.close()
        as_admin = {"sasl.username": "admin", "sasl.password": passwords["kafka_admin_password"]}
        admin_client = AdminClient({**client_config(svc), **as_admin})
        admin_client.create_topics([NewTopic("payroll", 1, 1)])["payroll"].result(30)
        errors: list[Any] = []
        stranger = Producer({**producer_config(svc), "error_cb": errors.append})
        stranger.produce("payroll", b"x", on_delivery=lambda err, _msg: errors.append(err))
        stranger.flush(15)
        assert errors and any("AUTHORIZATION" in str(e).upper() for e in errors), errors
    finally:
        stop_process(broker.pid)
        log.close()


@pytest.mark.integration
def test_mlflow_basic_auth_with_the_client_config_the_service_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    password = _password()
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(
        MLFLOW_INI.read_text().replace("sqlite:////data/mlflow-auth/", f"sqlite:///{tmp_path}/")
    )
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _password(),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    log = (tmp_path / "mlflow.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "basic-auth",
         "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts",
         "--workers", "2", "--gunicorn-opts", "--keep-alive 30"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()  # unprotected
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (tmp_path / "mlflow.log").read_text()[-3000:]
                time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(
                url + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=10
            )
        assert anonymous.value.code == 401
        settings = load_settings(data_dir=tmp_path / "data", mlflow_tracking_uri=url)
        home = tmp_path / "home"
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        client = MlflowClient(
            tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
        )
        with pytest.raises(MlflowException):
            client.create_experiment("shelfcast")  # no credentials file yet
        # The mlflow_credentials secret, as docs/security.md writes it, at ~/.mlflow/credentials.
        (home / ".mlflow").mkdir(parents=True)
        credentials = "[mlflow]\nmlflow_tracking_username = shelfcast\n"
        (home / ".mlflow" / "credentials").write_text(
            f"{credentials}mlflow_tracking_password = {password}\n"
        )
        experiment = client.create_experiment("shelfcast")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "mase", 0.8)
        client.create_registered_model("S1-I1")
        version = client.create_model_version(
            "S1-I1", f"runs:/{run.info.run_id}/model", run.info.run_id
        )
        client.set_registered_model_alias("S1-I1", "champion", version.version)
        assert client.get_model_version_by_alias("S1-I1", "champion").version == version.version
        (home / ".mlflow" / "credentials").write_text(
            "[mlflow]\nmlflow_tracking_username = shelfcast\nmlflow_tracking_password = guess\n"
        )
        with pytest.raises(MlflowException):
            client.set_registered_model_alias("S1-I1", "champion", version.version)
    finally:
        stop_process(server.pid)
        log.close()


@pytest.fixture
def ray_head_with_token(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Ray head started as the profile starts it: RAY_AUTH_MODE=token with a token file."""
    token = tmp_path / "ray_auth_token"
    token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="sc-ray-"))  # short: Ray's socket paths
    command = ray_node_command(
        "127.0.0.1", f"--port={port}", 1, {}, head=True, extra=("--temp-dir", str(temp))
    )
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # fmt: skip
    log = (tmp_path / "ray.log").open("wb")
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        wait_for_ray_node(head, tmp_path / "ray.log")
        yield f"127.0.0.1:{port}", token
    finally:
        stop_process(head.pid, timeout=3.0)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _join(address: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        f"import ray; ray.init(address={address!r}, log_to_driver=False); "
        "print('joined', ray.get(ray.remote(lambda: 41 + 1).remote()))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    clean["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.integration
def test_a_ray_head_with_token_auth_runs_code_only_for_a_driver_with_the_token(
    ray_head_with_token: tuple[str, Path],
) -> None:
    address, token = ray_head_with_token
    wrong: list[dict[str, str]] = [
        {},
        {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token-" * 3},
    ]
    # Side by side: a refused driver spends most of its time waiting to give up.
    with ThreadPoolExecutor(3) as pool:
        joining = pool.submit(
            _join, address, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        )
        refusals = [(env, pool.submit(_join, address, env)) for env in wrong]
        joined = joining.result()
        assert joined.returncode == 0 and "joined 42" in joined.stdout, joined.stderr[-3000:]
        for env, refusing in refusals:
            refused = refusing.result()
            assert refused.returncode != 0 and "joined" not in refused.stdout, env
            assert "auth" in refused.stderr.lower(), refused.stderr[-2000:]


def _spark_class(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(spark_class), *args], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )  # fmt: skip


def _apps(ui: int) -> list[str]:
    """The applications the master registered (none while its UI is still starting)."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json", timeout=5) as answer:
            state = json.loads(answer.read())
    # The UI listens before its pages are attached: until "/json" is, the root page answers
    # it with HTML.
    except (OSError, json.JSONDecodeError):
        return []
    return [app["name"] for app in state.get("activeapps", []) + state.get("completedapps", [])]


_DRIVER = """
import sys, time
from pyspark.sql import SparkSession
builder = SparkSession.builder.master(sys.argv[1]).appName(sys.argv[2])
spark = builder.config("spark.ui.enabled", "false").getOrCreate()
time.sleep(60)
"""


@pytest.mark.integration
def test_a_spark_master_with_authentication_registers_only_a_driver_with_the_secret(
    tmp_path: Path,
) -> None:
    import pyspark

    conf = tmp_path / "spark-conf"
    conf.mkdir(mode=0o700)
    # The spark_defaults secret as docs/security.md writes it.
    (conf / "spark-defaults.conf").write_text(
        "spark.authenticate true\n"
        f"spark.authenticate.secret {_password()}\n"
        "spark.network.crypto.enabled true\n"
    )
    env = {
        **os.environ,
        "SPARK_HOME": str(Path(pyspark.__file__).parent),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_CONF_DIR": str(conf),
        "PYSPARK_PYTHON": sys.executable,
    }
    port, ui = free_port(), free_port()
    master = _spark_class(
        ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(ui)],
        tmp_path / "master.log", env,
    )  # fmt: skip
    drivers: list[subprocess.Popen[bytes]] = []
    try:
        assert wait_for_port("127.0.0.1", ui, 90), (tmp_path / "master.log").read_text()[-3000:]
        url = f"spark://127.0.0.1:{port}"
        without = {k: v for k, v in env.items() if k != "SPARK_CONF_DIR"}
        for name, driver_env in [("with-secret", env), ("without-secret", without)]:
            with (tmp_path / f"{name}.log").open("ab") as out:
                drivers.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _DRIVER, url, name],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=driver_env,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 120
        while "with-secret" not in _apps(ui):
            assert time.monotonic() < deadline, (tmp_path / "with-secret.log").read_text()[-3000:]
            time.sleep(1)
        refused = tmp_path / "without-secret.log"
        # Refused for not authenticating (the master expected SASL), and never registered.
        while "SaslMessage" not in refused.read_text():
            assert time.monotonic() < deadline, refused.read_text()[-3000:]
            time.sleep(1)
        apps = _apps(ui)
        assert "with-secret" in apps and "without-secret" not in apps, apps
    finally:
        for driver in drivers:
            stop_process(driver.pid, timeout=5)
        stop_process(master.pid)
