"""A private PostgreSQL cluster and an MLflow tracking server on it, as separate processes.

The cluster-mode stores of docker-compose.yml, started the way its file starts them: Debian's
PostgreSQL (``initdb`` into a temporary folder, ``postgres`` on a free loopback port and a
private socket folder), one database and one password-protected user per store, and
``mlflow server`` reading its database URI from the environment (``MLFLOW_BACKEND_STORE_URI``,
never its command line), artifacts served from a local folder. ``initdb`` and ``postgres``
refuse to run as root: as root they run as the ``postgres`` user Debian's package creates.

Used by ``bench.stores`` and by the test fixtures (tests/conftest.py), so it lives here, where
the benchmarks need not import the tests; stopped by pid.
"""

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from pydantic import SecretStr

__all__ = [
    "DATABASES",
    "MLFLOW_SERVER_FLAGS",
    "MLFLOW_STORE_ENV",
    "OPTUNA_SECRET",
    "TRACKING_ENV",
    "URL_SCHEME",
    "Database",
    "MlflowServer",
    "PostgresCluster",
    "mlflow_server",
    "postgres_bin_dir",
    "postgres_cluster",
    "postgres_major",
]

# What docker-compose.yml configures (tests/test_compose.py checks that it does): the
# databases (each owned by a user of the same name), the URL scheme, how Shelfcast is given
# the stores (the tracking server's URL in the environment, the Optuna URL as a secret file),
# and the MLflow server's store variable and flags.
DATABASES = ("optuna", "mlflow")
URL_SCHEME = "postgresql"
TRACKING_ENV = "SHELFCAST_MLFLOW_TRACKING_URI"
OPTUNA_SECRET = "shelfcast_optuna_storage"
MLFLOW_STORE_ENV = "MLFLOW_BACKEND_STORE_URI"
# ``--workers`` is mlflow's own flag: mlflow appends ``-w <workers>`` (4 by default) after
# ``--gunicorn-opts``, so a ``--workers`` inside those options is overridden.
MLFLOW_SERVER_FLAGS = (
    "--artifacts-destination",
    "--serve-artifacts",
    "--workers",
    "--gunicorn-opts",
)
_SUPERUSER = "postgres"


def postgres_bin_dir() -> Path:
    """Debian's PostgreSQL binaries (the newest major installed)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    raise RuntimeError(
        "No PostgreSQL server is installed (Debian's 'postgresql' package): run ./scripts/setup."
    )


def postgres_major(bin_dir: Path | None = None) -> int:
    """The major version of the installed server, e.g. 15."""
    out = subprocess.run(
        [str((bin_dir or postgres_bin_dir()) / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"\(PostgreSQL\) (\d+)", out)
    if found is None:
        raise RuntimeError(f"Cannot read a version from {out!r}")
    return int(found.group(1))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _password() -> SecretStr:
    # Characters a URL must escape, so that every URL here is built the careful way.
    return SecretStr(f"p@ss/{secrets.token_urlsafe(12)}%:")


@dataclass(frozen=True)
class Database:
    """One store's database and the user that owns it."""

    name: str
    user: str
    password: SecretStr
    host: str
    port: int

    def url(self) -> SecretStr:
        """``postgresql://user:password@host:port/name``, the password URL-encoded."""
        secret = quote(self.password.get_secret_value(), safe="")
        where = f"{self.host}:{self.port}/{self.name}"
        return SecretStr(f"{URL_SCHEME}://{self.user}:{secret}@{where}")


@dataclass
class PostgresCluster:
    """A running private cluster: its folder, port, server process and databases."""

    root: Path
    host: str
    port: int
    pid: int
    superuser_password: SecretStr = field(repr=False)
    databases: dict[str, Database] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def create_database(self, name: str) -> Database:
        """A database ``name`` owned by a new user ``name`` with a random password."""
        import psycopg
        from psycopg import sql

        database = Database(name, name, _password(), self.host, self.port)
        with psycopg.connect(
            host=self.host,
            port=self.port,
            user=_SUPERUSER,
            password=self.superuser_password.get_secret_value(),
            dbname="postgres",
            autocommit=True,
        ) as conn:
            # Utility statements take no bind parameters: the password goes in as a literal.
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(database.password.get_secret_value())
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(name)
                )
            )
        self.databases[name] = database
        return database


def _run_as() -> tuple[str | None, str | None]:
    """(user, group) to run the server as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam(_SUPERUSER)
    except KeyError:
        raise RuntimeError(
            "Running as root, and there is no 'postgres' user to run PostgreSQL as: install "
            "Debian's 'postgresql' package (./scripts/setup)."
        ) from None
    import grp

    return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name


def _give(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user)


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float, group: bool) -> None:
    """``sig`` (to its whole process group if ``group``), then SIGKILL to the group."""
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


@contextmanager
def postgres_cluster(durable: bool = False, timeout: float = 60.0) -> Iterator[PostgresCluster]:
    """Start a private cluster on a free loopback port; stop it (fast shutdown) by pid on exit.

    ``durable=False`` (tests) turns fsync off; benchmarks keep PostgreSQL's defaults.
    """
    bin_dir = postgres_bin_dir()
    user, group = _run_as()
    # Not under pytest's temporary folders: they are 0700 and root's, and the server may not be.
    root = Path(tempfile.mkdtemp(prefix="shelfcast-pg-"))
    try:
        data, sockets = root / "data", root / "sockets"
        sockets.mkdir()
        pwfile = root / "pwfile"
        superuser = _password()
        pwfile.write_text(superuser.get_secret_value())
        pwfile.chmod(0o600)
        for path in (root, sockets, pwfile):
            _give(path, user)
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                _SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=user,
            group=group,
            stdin=subprocess.DEVNULL,
            cwd=root,
        )
        pwfile.unlink()
        port = _free_port()
        options = ["-c", "fsync=off", "-c", "synchronous_commit=off"] if not durable else []
        log_path = root / "postgres.log"
        with log_path.open("ab") as log:
            _give(log_path, user)
            proc = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(sockets),
                    "-h",
                    "127.0.0.1",
                    "-c",
                    "max_connections=200",
                    *options,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=user,
                group=group,
                cwd=root,
            )
        try:
            if not _wait_for_port("127.0.0.1", port, proc, timeout):
                raise RuntimeError(
                    f"PostgreSQL did not listen on 127.0.0.1:{port} within {timeout:.0f} s: "
                    f"{log_path.read_text()[-2000:]}"
                )
            yield PostgresCluster(root, "127.0.0.1", port, proc.pid, superuser)
        finally:
            # SIGINT is PostgreSQL's fast shutdown: it ends client sessions (Ray workers keep
            # pooled connections open) instead of waiting for them, as SIGTERM would.
            _stop(proc, signal.SIGINT, 15.0, group=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server``: its URL, artifact folder, log and pid."""

    url: str
    artifacts: Path
    log_path: Path
    pid: int


def _healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        time.sleep(0.2)
    return False


@contextmanager
def mlflow_server(
    database: Database, root: Path, workers: int = 1, timeout: float = 180.0
) -> Iterator[MlflowServer]:
    """``mlflow server`` on ``database`` (migrated on first start), artifacts under ``root``.

    As docker-compose.yml runs it: the store URI in ``MLFLOW_BACKEND_STORE_URI``, artifacts
    served by the server (clients upload them over HTTP), no job executor."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    artifacts = root / "mlflow-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        MLFLOW_STORE_ENV: database.url().get_secret_value(),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    log_path = root / "mlflow-server.log"
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        MLFLOW_SERVER_FLAGS[0],
        str(artifacts),
        MLFLOW_SERVER_FLAGS[1],
        MLFLOW_SERVER_FLAGS[2],
        str(workers),
        MLFLOW_SERVER_FLAGS[3],
        "--keep-alive 30",
    ]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=root,
        )
    try:
        if not _healthy(url, proc, timeout):
            raise RuntimeError(
                f"mlflow server did not answer at {url} within {timeout:.0f} s: "
                f"{log_path.read_text()[-2000:]}"
            )
        yield MlflowServer(url, artifacts, log_path, proc.pid)
    finally:
        # SIGINT: gunicorn's quick shutdown (SIGTERM waits out its workers' keep-alive). The
        # server keeps no state of its own (it is all in PostgreSQL): 2 s, then SIGKILL.
        _stop(proc, signal.SIGINT, 2.0, group=True)
