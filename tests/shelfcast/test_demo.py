"""``shelfcast demo`` on real parts (the session's broker and Ray head, its own service and
simulator): Ctrl-C says "stopping" at once, the demo returns within 10 s, and nothing it
started is left running."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shelfcast.retrain_config import ray_config
from shelfcast.settings import Settings
from tests.shelfcast.test_service import FAST, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _left_running(marker: str) -> dict[int, str]:
    """Live processes whose command line mentions ``marker`` (the demo's data dir)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if marker.encode() in raw and state != "Z":
            found[int(pid)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return found


def test_ctrl_c_stops_the_demo_and_all_it_started_within_10_s(
    make_settings: Callable[..., Settings], ray_address: str, tmp_path: Path
) -> None:
    settings = make_settings(ray_address=ray_address)
    data = tmp_path / "demo"
    env = {
        **os.environ,
        **{f"SHELFCAST_{k.upper()}": str(v) for k, v in FAST.items()},
        "SHELFCAST_EMBEDDED_BROKER": "false",
        "SHELFCAST_EMBEDDED_RAY": "false",
        "SHELFCAST_RAY_ADDRESS": ray_address,
        "SHELFCAST_RAY_NAMESPACE": settings.ray_namespace,
        "SHELFCAST_TOPIC_POS_SALES": settings.topic_pos_sales,
        "SHELFCAST_TOPIC_POS_PLANS": settings.topic_pos_plans,
        "SHELFCAST_TOPIC_POS_STORES": settings.topic_pos_stores,
        "SHELFCAST_TOPIC_DLQ": settings.topic_dlq,
        "SHELFCAST_TOPIC_FORECASTS": settings.topic_forecasts,
        "SHELFCAST_INGEST_TRIGGER_SECONDS": "0.5",
        "SHELFCAST_CONSOLE_PORT": "0",
    }
    out = tmp_path / "demo.out"
    with out.open("wb") as log:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shelfcast.cli",
                "demo",
                "--data-dir",
                str(data),
                "--bootstrap",
                settings.bootstrap_servers,
                "--stores",
                "1",
                "--items",
                "2",
                "--history-days",
                "40",
                "--rate",
                "20",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        service_log = data / "run" / "service.log"
        wait_for(
            lambda: service_log.is_file() and b"ingest running" in service_log.read_bytes(),
            180,
            "the demo's service to run its query",
        )
        time.sleep(2)  # the history replay under way
        assert _left_running(str(data)), "the demo's service and simulator run"
        seen = out.stat().st_size
        started = time.monotonic()
        demo.send_signal(signal.SIGINT)
        said = None
        while demo.poll() is None and time.monotonic() - started < 60:
            if said is None and b"stopping" in out.read_bytes()[seen:]:
                said = time.monotonic() - started
            time.sleep(0.02)
        exited = time.monotonic() - started
        text = out.read_text(errors="replace")
        assert said is not None and said <= 2.0, (said, text[-3000:])
        assert exited <= 10.0, (exited, text[-3000:])
        assert demo.returncode == 0, text[-3000:]
        assert "demo stopped in" in text
        assert "shelfcast demo" in text  # a plain frame, since the output is not a terminal
        left = _left_running(str(data))
        assert not left, left
        print(f"demo Ctrl-C: 'stopping' after {said:.2f} s, exited after {exited:.2f} s")
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(30)
        for pid in _left_running(str(data)):  # what a failed demo left: its own children
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        import ray

        from retrain.cluster.client import COORDINATOR, connect

        connect(ray_config(settings))
        try:
            ray.kill(ray.get_actor(COORDINATOR, namespace=settings.ray_namespace))
        except ValueError:
            pass
