"""The embedded default: background processes on loopback that ``shelfcast up`` starts.

Each process has a pid file under ``<data_dir>/run``; ``shelfcast down`` stops exactly those.
"""

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from retrain.cluster.client import loopback_ray_env
from shelfcast.errors import EmbeddedStackError
from shelfcast.jars import broker_classpath, java_binary
from shelfcast.kafka import ensure_scram_user
from shelfcast.kafka_broker import (
    KafkaNode,
    class_archive_path,
    format_command,
    prepare_node,
    server_command,
)
from shelfcast.private import PRIVATE_UMASK, private_dir, private_temp_dir
from shelfcast.settings import Settings

__all__ = [
    "CLIENT_JIT",
    "RAY_NODE_PORTS",
    "ManagedProcess",
    "client_jit_options",
    "free_port",
    "free_ports",
    "logged",
    "ray_node_command",
    "ray_temp_dir",
    "running",
    "start_broker",
    "start_ray",
    "stop_all",
    "stop_process",
    "wait_for_port",
]


log = logging.getLogger("shelfcast.embedded")

# The client JIT only, for JVMs that live seconds to minutes (the demo's, the tests'): C2's
# compiler threads took ~5 CPU-s of Spark's start and ~2 of the broker's on 2 cores that every
# other process of the start-up shares. 'shelfcast run' and 'up' keep the JVM default.
CLIENT_JIT = "-XX:TieredStopAtLevel=1"


def client_jit_options(given: str) -> str:
    """``JAVA_TOOL_OPTIONS`` ``given``, with :data:`CLIENT_JIT` after them once."""
    return given if CLIENT_JIT in given.split() else f"{given} {CLIENT_JIT}".strip()


@dataclass(frozen=True)
class ManagedProcess:
    """A process started by ``shelfcast up``, known by its pid file."""

    name: str
    pid: int


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def _started_at(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return _created(pid)
    # Field 22; the command name (field 2) may hold spaces, so count from its closing ')'.
    return stat.rpartition(")")[2].split()[19]


def _created(pid: int) -> str | None:
    """Where there is no /proc: the start time psutil reads (a Ray dependency)."""
    try:
        import psutil  # type: ignore[import-untyped]

        return f"t{psutil.Process(pid).create_time():.2f}"
    except Exception:  # no such process, or no way to tell
        return None


def running(settings: Settings) -> list[ManagedProcess]:
    """The processes ``up`` started that are still alive.

    A pid file holds the pid and the process's start time: a pid reused by another process
    after a reboot or a crash does not match, so ``down`` never signals a stranger. A pid
    file without a start time proves nothing and is not trusted either.
    """
    if not settings.run_dir.is_dir():
        return []
    found = []
    for pid_file in sorted(settings.run_dir.glob("*.pid")):
        try:
            pid_text, _, started = pid_file.read_text().strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if not started.strip():
            if _alive(pid):
                log.warning(
                    "%s names pid %d without its start time, so it may be another process "
                    "by now: not touched (stop it yourself if it is ours).",
                    pid_file,
                    pid,
                )
            continue
        if _alive(pid) and started == _started_at(pid):
            found.append(ManagedProcess(pid_file.stem, pid))
    return found


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split(",")[0].rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError as exc:
        raise EmbeddedStackError(
            f"Cannot read a port from SHELFCAST_BOOTSTRAP_SERVERS={address!r}; use HOST:PORT."
        ) from exc


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """True once something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def _launch(
    settings: Settings,
    name: str,
    what: str,
    command: list[str],
    address: tuple[str, int],
    timeout: float,
    env: dict[str, str] | None = None,
    ready: bytes | None = None,
) -> ManagedProcess:
    """Start ``command`` in its own session with a pid file and a log; wait for its port and,
    when given, for the ``ready`` line in its log."""
    host, port = address
    private_dir(settings.data_dir)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.run_dir / f"{name}.log"
    out = log_path.open("ab")
    offset = out.tell()  # the log is appended to: an earlier start's lines are not this one's
    try:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            umask=PRIVATE_UMASK,  # its files (Kafka's logs, Ray's) for our user only
        )
    except OSError as exc:
        raise EmbeddedStackError(
            f"Could not start the embedded {what}: {exc}. Reinstall Shelfcast (scripts/setup)."
        ) from exc
    finally:
        out.close()
    started = _started_at(proc.pid)
    if started is None:
        stop_process(proc.pid)
        raise EmbeddedStackError(
            f"Cannot read the start time of the embedded {what} (pid {proc.pid}): without it "
            "'shelfcast down' could not tell it from a later process with the same pid."
        )
    _pid_file(settings, name).write_text(f"{proc.pid} {started}")
    deadline = time.monotonic() + timeout
    if not wait_for_port(host, port, timeout) or proc.poll() is not None:
        stop_process(proc.pid)
        raise EmbeddedStackError(
            f"The embedded {what} did not listen on {host}:{port} within {timeout:.0f} s; "
            f"see {log_path}."
        )
    if ready is not None and not logged(proc, log_path, offset, ready, deadline):
        ended = proc.poll() is not None
        stop_process(proc.pid)
        how = "exited during its start" if ended else f"did not start within {timeout:.0f} s"
        raise EmbeddedStackError(
            f"The embedded {what} listened on {host}:{port} but {how}; see {log_path}, "
            "then start it again."
        )
    return ManagedProcess(name, proc.pid)


def logged(
    proc: subprocess.Popen[bytes], log: Path, offset: int, line: bytes, deadline: float
) -> bool:
    """Whether ``line`` appears in ``log`` after ``offset`` while ``proc`` runs, by the
    deadline."""
    while time.monotonic() < deadline:
        with log.open("rb") as found:
            found.seek(offset)
            if line in found.read():
                return proc.poll() is None
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def _claim(
    settings: Settings, name: str, address: str, variable: str, switch: str
) -> ManagedProcess | tuple[str, int]:
    """Ours if already running; else the free (host, port) to start on."""
    for managed in running(settings):
        if managed.name == name:
            return managed
    host, port = _host_port(address)
    if wait_for_port(host, port, 0.1):
        raise EmbeddedStackError(
            f"Something already listens on {host}:{port}. Stop it, or point {variable} at a "
            f"free port (or at that service, with {switch}=false)."
        )
    return host, port


def start_broker(
    settings: Settings,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    record_archive: Path | None = None,
) -> ManagedProcess:
    """Start the embedded Apache Kafka (KRaft) on the bootstrap address; return once it serves.

    The storage under ``<data dir>/kafka`` is formatted the first time only, so topics and
    offsets survive ``down`` and ``up``. ``env`` is added to the environment of both JVMs.
    Both map this environment's archive of the broker's classes when setup recorded one;
    given ``record_archive``, the node records one there instead, as it stops
    (``shelfcast.class_archive``).
    """
    claimed = _claim(
        settings,
        "broker",
        settings.bootstrap_servers,
        "SHELFCAST_BOOTSTRAP_SERVERS",
        "SHELFCAST_EMBEDDED_BROKER",
    )
    if isinstance(claimed, ManagedProcess):
        return claimed
    private_dir(settings.data_dir)
    java = java_binary()
    classpath = broker_classpath(settings.jars_dir)
    archive = class_archive_path(java, classpath)
    node = KafkaNode(
        settings.kafka_dir,
        claimed[0],
        claimed[1],
        settings.kafka_security_protocol,
        settings.kafka_sasl_mechanism,
    )
    ports = prepare_node(node, free_port(), free_port())
    if not node.formatted:
        done = subprocess.run(
            format_command(java, classpath, node, archive),
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        if done.returncode != 0:
            raise EmbeddedStackError(
                f"Formatting Kafka's storage in {node.log_dir} failed: "
                f"{(done.stdout + done.stderr).strip()[-500:]}. Delete that folder if it is "
                "left over from another Kafka, then run 'shelfcast up' again."
            )
    proc = _launch(
        settings,
        "broker",
        "Kafka broker",
        server_command(java, classpath, node, archive=archive, record_to=record_archive),
        claimed,
        timeout,
        env=env,
    )
    if node.scram:
        ensure_scram_user(settings, f"127.0.0.1:{ports['internal']}")
    return proc


# The ports of a Ray node that ``ray start`` takes as options, pinned to free ones on loopback.
RAY_NODE_PORTS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    return free_ports(1)[0]


def free_ports(count: int, taken: Collection[int] = ()) -> list[int]:
    """``count`` distinct TCP ports free on loopback right now, none of ``taken``. The
    sockets stay bound until all are chosen: one :func:`free_port` after another may be
    handed the same port twice (a Ray node refuses to start when two of its ports match)."""
    sockets: list[socket.socket] = []
    found: list[int] = []
    try:
        while len(found) < count:
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in taken:
                found.append(port)
        return found
    finally:
        for sock in sockets:
            sock.close()


# What 'ray start --block' logs once its node is up.
RAY_STARTED = b"Ray runtime started."


def start_ray(settings: Settings, timeout: float = 60.0) -> ManagedProcess:
    """Start a Ray head on loopback at ``ray_address`` (all its ports pinned or free)."""
    claimed = _claim(
        settings, "ray", settings.ray_address, "SHELFCAST_RAY_ADDRESS", "SHELFCAST_EMBEDDED_RAY"
    )
    if isinstance(claimed, ManagedProcess):
        return claimed
    host, port = claimed
    loopback_ray_env()
    cpus = settings.ray_num_cpus or os.cpu_count() or 1
    # The coordinator is placed on the node that advertises its resource: this head.
    resources = (
        {settings.ray_coordinator_resource: 1.0} if settings.ray_coordinator_resource else {}
    )
    # Ray's default, /tmp/ray, is one shared, predictable folder; its workers and the
    # drivers that join take the head's.
    temp = ray_temp_dir(settings)
    command = ray_node_command(
        host, f"--port={port}", cpus, resources, head=True, extra=("--temp-dir", str(temp))
    )
    # Its GCS listens seconds before the node is up, and 'ray start' still gives up when the
    # node does not register within Ray's own 30 s (seen on 2 cores busy starting JVMs): the
    # head is ready once it says so.
    return _launch(
        settings, "ray", "Ray head", command, claimed, timeout, env=RAY_NODE_ENV,
        ready=RAY_STARTED,
    )  # fmt: skip


# Ray's sockets live at <temp dir>/session_<date>_<time>_<pid>/sockets/plasma_store, and a
# Unix socket's path has at most 107 bytes: a longer temp dir fails at start.
_RAY_TEMP_MAX = 107 - len("/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store")


def ray_temp_dir(settings: Settings) -> Path:
    """The embedded head's temporary folder: ``<data dir>/ray`` when its socket paths fit,
    else a private ``mkdtemp`` folder (recorded in the run dir, removed by ``down``)."""
    inside = settings.data_dir / "ray"
    if len(str(inside)) <= _RAY_TEMP_MAX:
        private_dir(settings.data_dir)
        inside.mkdir(mode=0o700, exist_ok=True)
        return inside
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    record = settings.run_dir / "ray-temp-dir"
    with contextlib.suppress(OSError):
        _remove_ray_temp(record)
    temp = private_temp_dir("shelfcast-ray-")
    record.write_text(str(temp))
    return temp


def _remove_ray_temp(record: Path) -> None:
    """Remove the private temp folder ``record`` names (only one of ours), and the record."""
    temp = Path(record.read_text().strip())
    if temp.name.startswith("shelfcast-ray-") and temp.is_dir() and temp.owner() == _me():
        shutil.rmtree(temp, ignore_errors=True)
    record.unlink(missing_ok=True)


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


# One task per CPU: a multi-threaded BLAS in each would only fight over the same cores.
RAY_NODE_ENV = {
    name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
}


def ray_node_command(
    host: str,
    join: str,
    cpus: int,
    resources: dict[str, float],
    head: bool = False,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """``ray start`` for a node on ``host`` whose every port is pinned to a free one:
    the head (``join`` is ``--port=N``) or a worker (``join`` is ``--address=HOST:PORT``)."""
    ray_bin = Path(sys.executable).with_name("ray")
    # Worker ports 0 = any free port: Ray's default range would collide with its own GCS port.
    gcs = int(join.rpartition(":")[2].rpartition("=")[2])
    chosen = free_ports(len(RAY_NODE_PORTS), {gcs})
    ports = {f"--{name}": str(port) for name, port in zip(RAY_NODE_PORTS, chosen, strict=True)}
    head_only = ["--head", "--include-dashboard=false", "--disable-usage-stats"] if head else []
    return [
        str(ray_bin),
        "start",
        *head_only,
        "--block",
        join,
        "--node-ip-address",
        host,
        "--num-cpus",
        str(cpus),
        *([f"--resources={json.dumps(resources)}"] if resources else []),
        "--include-log-monitor=false",
        "--min-worker-port",
        "0",
        "--max-worker-port",
        "0",
        *[item for pair in ports.items() for item in pair],
        *extra,
    ]


def stop_process(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL (its whole process group) after ``timeout``; reap our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.05)
    # Processes started with start_new_session lead their group: take their children too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _alive(pid)


def stop_all(settings: Settings) -> list[ManagedProcess]:
    """Stop every process ``up`` started (and only those); return what was stopped."""
    stopped = running(settings)
    for proc in reversed(stopped):
        # Ray drains for up to 30 s on SIGTERM even when idle; 'down' means now.
        stop_process(proc.pid, timeout=3.0 if proc.name == "ray" else 10.0)
    for pid_file in settings.run_dir.glob("*.pid") if settings.run_dir.is_dir() else []:
        pid_file.unlink(missing_ok=True)
    if any(proc.name == "ray" for proc in stopped):
        with contextlib.suppress(OSError):
            _remove_ray_temp(settings.run_dir / "ray-temp-dir")
    return stopped
