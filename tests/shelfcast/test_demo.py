"""``shelfcast demo`` on real parts (the session's broker and Ray head, its own service and
simulator), run twice on one data dir: each time Ctrl-C says "stopping" at once, the demo
returns within 10 s, and nothing it started is left running; the second run stores live
sales of its own (the first run's history, sent again, is stored once)."""

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shelfcast.retrain_config import ray_config
from shelfcast.settings import Settings
from tests.support.service import FAST
from tests.support.tables import stored_ids
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.solo, pytest.mark.timeout(420)]


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


def _sent(settings: Settings) -> int:
    """Events on the POS topic so far."""
    from confluent_kafka import Consumer, TopicPartition

    from shelfcast.kafka import client_config

    topic = settings.topic_pos_sales
    consumer = Consumer({**client_config(settings), "group.id": "tests-demo"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def _live_ids(demo: Settings) -> set[str]:
    """The stored ids of the simulator's live sales (the history's are ``sim-<serial>``)."""
    return {i for i in stored_ids(demo) if i.startswith("sim-live-")}


def _run_demo_then_ctrl_c(
    settings: Settings, ray_address: str, data: Path, out: Path, until: Callable[[], bool]
) -> None:
    """``shelfcast demo`` on ``data`` until ``until()`` holds, then Ctrl-C: "stopping" within
    2 s, returned within 10 s, exit code 0, nothing it started left running."""
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
        wait_for(until, 180, "the demo's service to run and the simulator to send")
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


def test_ctrl_c_stops_the_demo_and_all_it_started_within_10_s_and_a_second_run_stores_its_own(
    make_settings: Callable[..., Settings], ray_address: str, tmp_path: Path
) -> None:
    settings = make_settings(ray_address=ray_address)
    data = tmp_path / "demo"
    demo = settings.model_copy(update={"data_dir": data})
    service_log = data / "run" / "service.log"
    try:
        # 1. A first run, stopped while its history replay is under way.
        _run_demo_then_ctrl_c(
            settings,
            ray_address,
            data,
            tmp_path / "demo-1.out",
            lambda: (
                service_log.is_file()
                and b"ingest running" in service_log.read_bytes()
                and _sent(settings) > 0
            ),
        )
        # The demo made its data dir private before anything wrote there: no warning.
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for output in (tmp_path / "demo-1.out", service_log):
            assert b"lets other users" not in output.read_bytes()
        first_ids, first_live = set(stored_ids(demo)), _live_ids(demo)
        sent = _sent(settings)

        # 2. A second run on the same data dir: the history again, then live sales of its
        # own, which are stored (once each).
        _run_demo_then_ctrl_c(
            settings,
            ray_address,
            data,
            tmp_path / "demo-2.out",
            lambda: _sent(settings) > sent and bool(_live_ids(demo) - first_live),
        )
        ids = stored_ids(demo)
        assert len(ids) == len(set(ids)), "every stored event once"
        assert first_ids <= set(ids)
        assert _live_ids(demo) - first_live, "the second run stored live sales of its own"
    finally:
        import ray

        from retrain.cluster.client import COORDINATOR, connect

        connect(ray_config(settings))
        try:
            ray.kill(ray.get_actor(COORDINATOR, namespace=settings.ray_namespace))
        except ValueError:
            pass
