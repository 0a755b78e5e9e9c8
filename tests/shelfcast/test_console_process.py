"""The console in its own process: it serves with the service's settings (its secrets come
on a pipe, not in argv), says why when it cannot, and ends with the service, even one killed
with -9."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from shelfcast.console.process import ConsoleProcess
from shelfcast.embedded import free_port
from shelfcast.errors import ShelfcastError
from shelfcast.settings import Settings, load_settings, settings_from_json, settings_to_json
from streaming.thresholds import ThresholdStore
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-0123456789"


def _settings(tmp_path: Path, port: int) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data", console_port=port, console_token=SecretStr(TOKEN)
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_settings_cross_the_pipe_whole_secrets_included(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 8123)
    text = settings_to_json(settings)
    assert TOKEN in text  # on the pipe only: never argv, logs or repr
    assert settings_from_json(text) == settings
    assert TOKEN not in repr(settings)


def test_it_serves_in_a_process_of_its_own_and_stops(tmp_path: Path) -> None:
    port = free_port()
    console = ConsoleProcess(_settings(tmp_path, port))
    url = console.start()
    pid = console.pid
    try:
        assert pid is not None and pid != os.getpid()
        assert url == f"http://127.0.0.1:{port}/"
        assert TOKEN not in Path(f"/proc/{pid}/cmdline").read_text()
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/api/thresholds").status_code == 200
            change = {"changes": {"min_new_events": "7"}}
            assert client.put("/api/thresholds", json=change).status_code == 401
            # The token reached the child: a write with it is let through.
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            answer = client.put("/api/thresholds", json=change, headers=bearer)
            assert answer.status_code == 200, answer.text
        assert ThresholdStore(tmp_path / "data").load().min_new_events == 7
    finally:
        console.stop()
    assert not _alive(pid)


def test_a_taken_port_is_said_and_the_child_is_gone(tmp_path: Path) -> None:
    port = free_port()
    first = ConsoleProcess(_settings(tmp_path, port))
    first.start()
    try:
        second = ConsoleProcess(_settings(tmp_path, port))
        with pytest.raises(ShelfcastError, match="SHELFCAST_CONSOLE_PORT"):
            second.start()
        assert second.pid is None
    finally:
        first.stop()


_PARENT = """
import sys, time
from shelfcast.console.process import ConsoleProcess
from shelfcast.settings import settings_from_json
console = ConsoleProcess(settings_from_json(sys.stdin.readline()))
console.start()
print(console.pid, flush=True)
time.sleep(600)
"""


def test_it_ends_when_the_service_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdin is not None and parent.stdout is not None
    parent.stdin.write(settings_to_json(_settings(tmp_path, free_port())) + "\n")
    parent.stdin.flush()
    child = int(parent.stdout.readline())
    try:
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        wait_for(lambda: not _alive(child), 30, "the console to end with its service")
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
