"""Ctrl-C and SIGTERM on real parts: ``shelfcast run`` says "stopping" at once and exits within
10 s, with its broker up and with it down, and loses nothing: after a restart every produced
event is stored once and every series has a forecast at its newest data."""

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shelfcast.embedded import free_port, start_broker, stop_process
from shelfcast.kafka import ensure_topics
from shelfcast.settings import Settings
from tests.support.events import history
from tests.support.invariants import settled
from tests.support.service import FAST, ServiceProcess, services
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.solo, pytest.mark.timeout(480)]

SAY_WITHIN = 2.0  # "stopping..." on the terminal
EXIT_WITHIN = 10.0


@pytest.fixture
def runs(ray_address: str) -> Iterator[Callable[[Settings], ServiceProcess]]:
    yield from services(ray_address, ServiceProcess.kill9)


def _events(series: int, days: range, tag: str) -> list[dict[str, Any]]:
    """``series`` series' events on the given days of the year (one event a day each)."""
    return [
        e
        for n in range(series)
        for e in history("Q", f"I{n}", days=days.stop, tag=tag)[days.start :]
    ]


def test_ctrl_c_and_sigterm_stop_within_10_s_broker_up_or_down_and_lose_nothing(
    make_settings: Callable[..., Settings],
    runs: Callable[[Settings], ServiceProcess],
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
