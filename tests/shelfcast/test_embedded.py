"""The embedded Apache Kafka through the CLI: down then up keeps topics and offsets; missing
Java or jars say what to run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from shelfcast.embedded import free_port, free_ports, ray_node_command

pytestmark = pytest.mark.integration


def shelfcast(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shelfcast.cli", *args, "--data-dir", str(data_dir)],
        env={**os.environ, "SHELFCAST_EMBEDDED_RAY": "false", **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def ends(bootstrap: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t"})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(2)
        ]
    finally:
        consumer.close()


def test_down_then_up_keeps_every_topic_and_offset(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {"SHELFCAST_BOOTSTRAP_SERVERS": bootstrap}
    try:
        up = shelfcast(tmp_path, "up", **env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Apache Kafka" in up.stdout
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(500):
            producer.produce("pos.sales", key=b"%d" % i, value=b"x")
        assert producer.flush(30) == 0
        before = ends(bootstrap, "pos.sales")
        assert sum(before) == 500
        assert "stopped broker" in shelfcast(tmp_path, "down", **env).stdout

        again = shelfcast(tmp_path, "up", **env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert ends(bootstrap, "pos.sales") == before
        assert (tmp_path / "kafka" / "logs" / "meta.properties").is_file()
    finally:
        shelfcast(tmp_path, "down", **env)


def test_missing_jars_say_what_to_run(tmp_path: Path) -> None:
    done = shelfcast(
        tmp_path,
        "up",
        SHELFCAST_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        SHELFCAST_JARS_DIR=str(tmp_path / "no-jars"),
    )
    assert done.returncode == 2
    assert "./scripts/setup" in done.stderr and "no-jars" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_java_says_what_to_run(tmp_path: Path) -> None:
    done = shelfcast(
        tmp_path,
        "up",
        SHELFCAST_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        PATH=str(Path(sys.executable).parent),
    )
    assert done.returncode == 2
    assert "No Java runtime" in done.stderr and "./scripts/setup" in done.stderr


def test_down_never_signals_a_process_that_reused_a_pid(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        run = tmp_path / "run"
        run.mkdir()
        # What a stale pid file looks like once its pid went to someone else.
        (run / "broker.pid").write_text(f"{stranger.pid} 1")
        done = shelfcast(tmp_path, "down")
        assert "nothing was running" in done.stdout
        assert stranger.poll() is None, "the stranger was killed"
    finally:
        stranger.kill()
        stranger.wait()


def test_the_cluster_id_is_never_read_as_an_option(tmp_path: Path) -> None:
    # A random id starts with "-" one time in 64; kafka-storage then saw "--cluster-id" bare.
    from shelfcast.kafka_broker import KafkaNode, format_command

    node = KafkaNode(tmp_path, "127.0.0.1", 9092)
    for _ in range(200):
        args = format_command("java", "cp", node)
        (given,) = [a for a in args if a.startswith("--cluster-id")]
        assert given.startswith("--cluster-id=") and len(given) > len("--cluster-id=")


def test_down_never_signals_a_pid_file_without_a_start_time(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        run = tmp_path / "run"
        run.mkdir()
        # A pid alone proves nothing: that pid may be anyone's by now.
        (run / "broker.pid").write_text(f"{stranger.pid}\n")
        done = shelfcast(tmp_path, "down")
        assert "nothing was running" in done.stdout
        assert "without its start time" in done.stderr
        assert stranger.poll() is None, "the stranger was killed"
    finally:
        stranger.kill()
        stranger.wait()


def test_the_data_dir_and_the_stack_temp_folders_are_private(tmp_path: Path) -> None:
    import shutil
    import stat
    import tempfile

    from shelfcast.embedded import ray_temp_dir
    from shelfcast.ingest_config import spark_config
    from shelfcast.private import private_dir
    from shelfcast.settings import load_settings

    short = Path(tempfile.mkdtemp(prefix="sc-"))  # pytest's folders are too deep for Ray
    data = private_dir(short / "new" / "data")
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    settings = load_settings(data_dir=data)
    temp = ray_temp_dir(settings)
    assert temp == data / "ray" and stat.S_IMODE(temp.stat().st_mode) == 0o700
    shutil.rmtree(short)
    # A data dir too deep for Ray's socket paths: a private mkdtemp folder, removed by down.
    deep = load_settings(data_dir=tmp_path / ("d" * 80))
    temp = ray_temp_dir(deep)
    assert temp.name.startswith("shelfcast-ray-") and stat.S_IMODE(temp.stat().st_mode) == 0o700
    assert (deep.run_dir / "ray-temp-dir").read_text() == str(temp)
    shelfcast(deep.data_dir, "down")
    assert temp.is_dir()  # down removes it only with the head it stopped
    # Spark's Derby home is under the data dir, not /tmp/derby.
    assert spark_config(deep).derby_home == deep.data_dir / "spark" / "derby"
    temp.rmdir()


def test_a_ray_nodes_ports_are_distinct_and_never_its_gcs_port() -> None:
    """Ray refuses to start a node two of whose ports match (it failed a CI run so)."""
    gcs = free_port()
    ports = free_ports(300, {gcs})
    assert len(set(ports)) == 300 and gcs not in ports
    for join in (f"--port={gcs}", f"--address=127.0.0.1:{gcs}"):
        command = ray_node_command("127.0.0.1", join, 1, {})
        pinned = [
            int(command[i + 1])
            for i, arg in enumerate(command)
            if arg.endswith("-port") and "worker" not in arg  # worker ports: 0, any
        ]
        assert len(pinned) == 6 and len(set(pinned)) == 6 and gcs not in pinned


_LISTENER = """
import socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
time.sleep(0.5)
if sys.argv[2] == "ready":
    print("Ray runtime started.", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("outcome", ["ready", "exits"])
def test_a_node_that_listens_is_started_only_once_it_logs_that_it_is_up(
    tmp_path: Path, outcome: str
) -> None:
    """A Ray head's GCS listens before its node is up, and 'ray start' may still give up (as
    it once did on a busy machine): started means the line that says so, not the port."""
    from shelfcast.embedded import RAY_STARTED, _launch, stop_process
    from shelfcast.errors import EmbeddedStackError
    from shelfcast.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "data")
    port = free_port()
    command = [sys.executable, "-c", _LISTENER, str(port), outcome]
    address = ("127.0.0.1", port)
    if outcome == "ready":
        started = _launch(settings, "node", "node", command, address, 30, ready=RAY_STARTED)
        stop_process(started.pid)
    else:
        with pytest.raises(EmbeddedStackError, match=r"exited during its start; see .*node\.log"):
            _launch(settings, "node", "node", command, address, 30, ready=RAY_STARTED)


def test_the_client_jit_is_added_once_after_the_options_given() -> None:
    from shelfcast.embedded import CLIENT_JIT, client_jit_options

    assert client_jit_options("") == CLIENT_JIT
    assert client_jit_options("-Xmx1g") == f"-Xmx1g {CLIENT_JIT}"
    assert client_jit_options(f"-Xmx1g {CLIENT_JIT}") == f"-Xmx1g {CLIENT_JIT}"
