"""The live terminal view: what a frame shows, from plain data (no parts needed)."""

import threading
import time
from datetime import date
from typing import Any

from rich.console import Console

from shelfcast.live import Poller, Replay, Step, View, console_address, observe, render, show_live
from shelfcast.settings import load_settings


def status(read: int, published: int = 0) -> dict[str, Any]:
    latest = [
        {
            "at": "2026-12-01T10:00:05+00:00",
            "series": "S001|I0002",
            "model_version": "3",
            "method": "mstl",
            "warm": True,
            "validation_mase": 0.812,
            "seconds": 1.25,
        }
    ][:published]
    return {
        "service": {
            "started_at": "2026-12-01T10:00:00+00:00",
            "last_batch": {
                "batch_id": 7,
                "records": 1200,
                "stored": 1190,
                "quarantined": 2,
                "changed_series": 10,
                "seconds": 0.41,
            },
        },
        "lag": {"0": {"end": 5000, "read": read, "lag": 5000 - read}},
        "series": {"done": 3, "queued": 7},
        "coordinator": {
            "queued": 5,
            "running": 2,
            "capacity": 2,
            "poisoned": {},
            "retrains_last_minute": 3,
            "published": published,
            "latest": latest,
        },
    }


def text(view: View, now: float) -> str:
    console = Console(record=True, width=120, force_terminal=False)
    console.print(render(view, now))
    return console.export_text()


def test_a_frame_shows_start_up_replay_pipeline_forecasts_and_links() -> None:
    view = View(
        "shelfcast demo",
        100.0,
        links={"console": "http://127.0.0.1:8470/", "logs": "/tmp/run"},
        steps=[Step("kafka + ray", 100.0, 6.1), Step("ray driver", 106.5)],
        replay=Replay(date(2024, 1, 1), 150, date(2024, 3, 31), 5000, 4000, True, 12.0),
    )
    observe(view, status(3000), 110.0)
    observe(view, status(4000, published=1), 112.0)
    view.first_forecast = 21.5
    out = text(view, 142.0)
    assert "up 42.0 s" in out and "first forecast after 21.5 s" in out
    assert "console http://127.0.0.1:8470/" in out
    assert "✓ kafka + ray 6.1 s" in out and "… ray driver 35.5 s" in out
    assert "91/150 days stored, 4,000/5,000 events read (sending…)" in out
    assert "500 ev/s read" in out  # 1,000 events over the 2 s between two statuses
    assert "#7: 1,200 records, 1,190 stored, 2 quarantined, 10 series" in out
    assert "5 queued, 2 running on 2 CPUs" in out
    assert "S001|I0002" in out and "v3" in out and "warm" in out and "0.812" in out
    assert "Ctrl-C stops" in out


def test_stopping_and_unreachable_parts_are_said() -> None:
    view = View("shelfcast status", 0.0)
    assert "gathering status" in text(view, 1.0)
    down = status(0)
    down["lag"] = {"error": "Kafka not reachable: timed out"}
    down["coordinator"] = {"error": "Ray coordinator not reachable: gone"}
    observe(view, down, 2.0)
    view.stopping = 3.0
    out = text(view, 3.5)
    assert "stopping… 0.5 s" in out and "Ctrl-C stops" not in out
    assert "Kafka not reachable" in out and "Ray coordinator not reachable" in out
    done = Replay(date(2024, 1, 1), 10, date(2024, 1, 10), 300, 300, False, 4.0, done=True)
    view.replay = done
    assert "10 days stored in 4.0 s, 300 events" in text(view, 4.0)


def test_the_console_link_follows_its_settings() -> None:
    assert console_address(object()) is None
    settings = load_settings()
    port = getattr(settings, "console_port", None)
    expected = f"http://127.0.0.1:{port}/" if port else None
    assert console_address(settings) == expected
    wide = settings.model_copy(update={"console_host": "0.0.0.0", "console_port": 8123})
    assert console_address(wide) == "http://127.0.0.1:8123/"


def test_a_slow_status_never_holds_the_view_and_a_pipe_gets_plain_frames() -> None:
    release = threading.Event()
    poller = Poller(lambda: release.wait(5) and {"ok": 1}, every=0.05).start()
    try:
        assert poller.latest is None  # the gather is still blocked; nothing waits for it
    finally:
        release.set()
        poller.stop()
    frames = []
    console = Console(record=True, width=80, force_terminal=False)
    with show_live(lambda: f"frame {len(frames)}", console, plain_every=0.0) as tick:
        for _ in range(3):
            frames.append(1)
            tick()
            time.sleep(0.01)
    out = console.export_text()
    assert "frame 1" in out and "frame 3" in out  # printed as it goes, and once at the end
