"""``shelfcast demo``: the embedded stack, the service and a POS simulator, with a live view.

Ctrl-C stops everything the demo started (and only that), by pid.
"""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from shelfcast.embedded import running, start_broker, start_ray, stop_all, stop_process
from shelfcast.kafka import ensure_topics
from shelfcast.settings import Settings
from shelfcast.status import gather_status, render_status

__all__ = ["run_demo"]


def _cli(settings: Settings, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "shelfcast.cli",
        *args,
        "--data-dir",
        str(settings.data_dir),
        "--bootstrap",
        settings.bootstrap_servers,
    ]


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def run_demo(
    settings: Settings,
    stores: int,
    items: int,
    history_days: int,
    rate: float,
    on_signals: Callable[[], threading.Event],
) -> None:
    """Run until SIGINT/SIGTERM (``on_signals`` installs the handlers); refresh every 3 s."""
    from retrain.cluster import connect

    started_stack = not running(settings)
    if settings.embedded_broker:
        start_broker(settings)
    if settings.embedded_ray:
        start_ray(settings)
    ensure_topics(settings)
    connect(settings)
    stop = on_signals()
    logs = settings.run_dir
    service = _spawn(_cli(settings, "run"), logs / "service.log")
    children: list[subprocess.Popen[bytes]] = [service]
    start = date(2024, 1, 1)

    def simulate() -> None:
        phases = [
            ("--days", str(history_days), "--start", start.isoformat()),
            (
                "--days",
                "365",
                "--start",
                (start + timedelta(days=history_days)).isoformat(),
                "--rate",
                str(rate),
            ),
        ]
        for phase in phases:
            if stop.is_set():
                return
            sim = _spawn(
                _cli(settings, "simulate", "--stores", str(stores), "--items", str(items), *phase),
                logs / "simulate.log",
            )
            children.append(sim)
            while sim.poll() is None and not stop.wait(0.5):
                pass

    feeder = threading.Thread(target=simulate, name="shelfcast-demo-sim", daemon=True)
    feeder.start()
    print(f"demo: {stores * items} series; logs in {logs}; Ctrl-C stops everything", flush=True)
    try:
        while not stop.wait(3.0):
            if service.poll() is not None:
                print(f"the service exited ({service.returncode}); see {logs / 'service.log'}")
                break
            view = render_status(gather_status(settings))
            sys.stdout.write("\x1b[2J\x1b[H" if sys.stdout.isatty() else "\n")
            print(
                f"shelfcast demo  {time.strftime('%H:%M:%S')}  (Ctrl-C stops)\n{view}", flush=True
            )
    finally:
        stop.set()
        for child in reversed(children):
            # The service drains its batch in flight on SIGTERM.
            stop_process(child.pid, timeout=60.0 if child is service else 5.0)
        if started_stack:
            stop_all(settings)
        print("demo stopped", flush=True)
