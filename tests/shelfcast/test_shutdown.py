"""Ctrl-C and SIGTERM on real parts: ``shelfcast run`` says "stopping" at once and exits within
10 s, with its broker up and with it down, and loses nothing: after a restart every produced
event is stored once and every series has a forecast at its newest data."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shelfcast.embedded import free_port, start_broker, stop_process
from shelfcast.kafka import ensure_topics
from shelfcast.settings import Settings
from tests.faults.invariants import settled
from tests.shelfcast.test_service import FAST, history, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

SAY_WITHIN = 2.0  # "stopping..." on the terminal
EXIT_WITHIN = 10.0


class Run:
    """``shelfcast run`` as a process of its own, as an operator starts it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log_path = settings.data_dir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            **{f"SHELFCAST_{k.upper()}": str(v) for k, v in FAST.items()},
            "SHELFCAST_RAY_ADDRESS": settings.ray_address,
            "SHELFCAST_RAY_NAMESPACE": settings.ray_namespace,
            "SHELFCAST_TOPIC_POS_SALES": settings.topic_pos_sales,
            "SHELFCAST_TOPIC_DLQ": settings.topic_dlq,
            "SHELFCAST_TOPIC_FORECASTS": settings.topic_forecasts,
            "SHELFCAST_INGEST_TRIGGER_SECONDS": "0.5",
            "SHELFCAST_CONSOLE_PORT": "0",
        }

    def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shelfcast.cli",
                    "run",
                    "--data-dir",
                    str(self.settings.data_dir),
                    "--bootstrap",
                    self.settings.bootstrap_servers,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def batches(self) -> int:
        """Micro-batches committed by this process so far (from its status file)."""
        import json

        path = self.settings.run_dir / "service-status.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return -1
        batch = data.get("last_batch")
        return -1 if batch is None or data.get("stopped_at") else int(batch["batch_id"])

    def signal_and_time(self, sig: signal.Signals) -> tuple[float, float]:
        """Send ``sig``: (seconds until "stopping" is in the output, seconds until the exit)."""
        assert self.proc is not None
        seen = self.log_path.stat().st_size
        started = time.monotonic()
        self.proc.send_signal(sig)
        said = float("inf")
        while self.proc.poll() is None and time.monotonic() - started < 60:
            if said == float("inf") and b"stopping" in self.log_path.read_bytes()[seen:]:
                said = time.monotonic() - started
            time.sleep(0.02)
        exited = time.monotonic() - started
        if said == float("inf") and b"stopping" in self.log_path.read_bytes()[seen:]:
            said = exited
        return said, exited

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def runs(ray_address: str) -> Iterator[Callable[[Settings], Run]]:
    made: list[Run] = []

    def make(settings: Settings) -> Run:
        run = Run(settings.model_copy(update={"ray_address": ray_address}))
        made.append(run)
        return run

    yield make
    import ray

    from retrain.cluster import COORDINATOR, connect

    for run in made:
        run.kill()
        connect(run.settings)  # this session's Ray head, not whichever started last
        try:
            ray.kill(ray.get_actor(COORDINATOR, namespace=run.settings.ray_namespace))
        except ValueError:
            pass


def _events(series: int, days: range, tag: str) -> list[dict[str, Any]]:
    """``series`` series' events on the given days of the year (one event a day each)."""
    return [
        e
        for n in range(series)
        for e in history("Q", f"I{n}", days=days.stop, tag=tag)[days.start :]
    ]


def test_ctrl_c_and_sigterm_stop_within_10_s_broker_up_or_down_and_lose_nothing(
    make_settings: Callable[..., Settings],
    runs: Callable[[Settings], Run],
    produce: Callable[..., int],
    tmp_path: Path,
) -> None:
    broker_settings = make_settings(data_dir=tmp_path / "broker").model_copy(
        update={"bootstrap_servers": f"127.0.0.1:{free_port()}"}
    )
    broker = start_broker(broker_settings)
    try:
        settings = broker_settings.model_copy(update={"data_dir": tmp_path / "svc", **FAST})
        ensure_topics(settings)
        run = runs(settings)
        chunks = [_events(4, days, "c") for days in (range(40), range(40, 50), range(50, 60))]
        timings = []

        # 1. Ctrl-C while it ingests and retrains.
        run.start()
        produce(settings, chunks[0])
        wait_for(lambda: run.batches() >= 0, 120, "a first micro-batch")
        said, exited = run.signal_and_time(signal.SIGINT)
        timings.append(("SIGINT", said, exited))
        assert said <= SAY_WITHIN, (said, run.log())
        assert exited <= EXIT_WITHIN, (exited, run.log())
        assert run.proc is not None and run.proc.returncode == 0, run.log()

        # 2. SIGTERM with its broker gone (Kafka's controlled shutdown) right after a batch
        # whose series went to Ray.
        run.start()
        produce(settings, chunks[1])
        wait_for(lambda: run.batches() >= 0, 120, "a micro-batch after the restart")
        stop_process(broker.pid)
        said, exited = run.signal_and_time(signal.SIGTERM)
        timings.append(("SIGTERM, broker down", said, exited))
        assert said <= SAY_WITHIN, (said, run.log())
        assert exited <= EXIT_WITHIN, (exited, run.log())

        # 3. Nothing lost: with the broker back, the restarted service stores every event
        # once (those before the stops, and new ones) and forecasts every series at its
        # newest data; then it stops once more, busy.
        broker = start_broker(broker_settings)
        run.start()
        produce(settings, chunks[2])
        wait_for(lambda: run.batches() >= 0, 120, "a micro-batch after the second restart")
        settled(settings, [e for chunk in chunks for e in chunk], 300, run.alive)
        said, exited = run.signal_and_time(signal.SIGTERM)
        timings.append(("SIGTERM", said, exited))
        assert said <= SAY_WITHIN and exited <= EXIT_WITHIN, (said, exited, run.log())
        print("stop timings (said, exited):", timings)
    finally:
        stop_process(broker.pid)
