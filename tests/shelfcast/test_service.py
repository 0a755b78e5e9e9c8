"""The whole service on real parts: Spark query, broker, Ray coordinator, MLflow, Delta."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from deltalake import DeltaTable

from contracts import parse_forecast
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings
from streaming.thresholds import ThresholdStore
from tests.conftest import read_topic, sale

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

FAST = {
    "retrain_cold_trials": 3,
    "retrain_warm_trials": 1,
    "retrain_horizon_days": 7,
    "retrain_uncertainty_samples": 20,
    "metrics_port": 0,
    "handoff_idle_seconds": 1.0,
    "retrain_group_cold_trials": 1,
    "retrain_group_warm_trials": 0,
    "retrain_group_folds": 2,
}


def history(store: str, item: str, days: int = 30, tag: str = "h") -> list[dict[str, Any]]:
    start = date(2024, 1, 1)
    return [
        sale(
            f"{tag}-{store}-{item}-{k}",
            store,
            item,
            (start + timedelta(days=k)).isoformat(),
            quantity=float(3 + (k * 7919) % 13),
        )
        for k in range(days)
    ]


def forecast_keys(settings: Settings, expect: int, timeout: float = 120) -> list[str]:
    messages = read_topic(settings, settings.topic_forecasts, expect, timeout)
    return [parse_forecast(m.value()).key for m in messages]


def series_state(settings: Settings) -> dict[str, dict[str, Any]]:
    if not DeltaTable.is_deltatable(str(settings.delta_dir / "series_state")):
        return {}
    rows = DeltaTable(str(settings.delta_dir / "series_state")).to_pyarrow_table().to_pylist()
    return {f"{r['store_id']}|{r['item_id']}": r for r in rows}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


@pytest.fixture
def service(
    spark: Any, make_settings: Callable[..., Settings], ray_address: str
) -> Iterator[Callable[..., Settings]]:
    """Start ``run_service`` in a thread on fresh settings; stopped (and its actor killed) after."""
    from shelfcast.service import run_service

    running: list[tuple[threading.Event, threading.Thread, Settings]] = []

    def start(**overrides: Any) -> Settings:
        settings = make_settings(ray_address=ray_address, **{**FAST, **overrides})
        stop = threading.Event()
        thread = threading.Thread(target=run_service, args=(settings, stop), daemon=True)
        thread.start()
        running.append((stop, thread, settings))
        return settings

    yield start
    import ray

    from retrain.cluster.client import COORDINATOR

    for stop, thread, settings in running:
        stop.set()
        thread.join(60)
        try:
            ray.kill(ray.get_actor(COORDINATOR, namespace=settings.ray_namespace))
        except ValueError:
            pass


def test_exactly_the_series_with_new_events_are_retrained_and_forecast(
    service: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = service()
    # One retrain per series even when the history lands over two micro-batches.
    ThresholdStore(settings.data_dir).set({"cooldown_seconds": "3600"})
    chosen = [("S1", "A"), ("S2", "B")]
    produce(settings, [e for s, i in chosen for e in history(s, i)])
    assert sorted(forecast_keys(settings, expect=2)) == ["S1|A", "S2|B"]
    wait_for(
        lambda: all(r["status"] == "done" for r in series_state(settings).values()),
        60,
        "status done",
    )
    state = series_state(settings)
    assert set(state) == {"S1|A", "S2|B"}
    assert all(r["model_version"] == "1" for r in state.values())


def test_a_threshold_changed_mid_run_applies_from_the_next_batch(
    service: Callable[..., Settings], produce: Callable[..., int]
) -> None:
    settings = service()
    thresholds = ThresholdStore(settings.data_dir)
    thresholds.set({"min_new_events": "1000"})
    produce(settings, history("S1", "C"))
    wait_for(lambda: "S1|C" in series_state(settings), 90, "series_state row")
    time.sleep(3)  # several batches and idle ticks with the high threshold
    assert forecast_keys(settings, expect=0, timeout=2) == []
    assert series_state(settings)["S1|C"]["status"] is None

    thresholds.set({"min_new_events": "10"})
    assert forecast_keys(settings, expect=1) == ["S1|C"]
    assert [h["key"] for h in thresholds.history()] == ["min_new_events", "min_new_events"]


def test_service_killed_mid_wave_loses_and_duplicates_nothing_and_finishes_the_wave(
    spark: Any,
    make_settings: Callable[..., Settings],
    ray_address: str,
    produce: Callable[..., int],
) -> None:
    import ray

    from retrain.cluster.client import COORDINATOR, coordinator

    settings = make_settings(ray_address=ray_address, **{**FAST, "retrain_cold_trials": 6})
    env = {
        **os.environ,
        **{f"SHELFCAST_{k.upper()}": str(v) for k, v in FAST.items()},
        "SHELFCAST_RETRAIN_COLD_TRIALS": "6",
        "SHELFCAST_RAY_ADDRESS": ray_address,
        "SHELFCAST_RAY_NAMESPACE": settings.ray_namespace,
        "SHELFCAST_TOPIC_POS_SALES": settings.topic_pos_sales,
        "SHELFCAST_TOPIC_POS_PLANS": settings.topic_pos_plans,
        "SHELFCAST_TOPIC_POS_STORES": settings.topic_pos_stores,
        "SHELFCAST_TOPIC_DLQ": settings.topic_dlq,
        "SHELFCAST_TOPIC_FORECASTS": settings.topic_forecasts,
        "SHELFCAST_INGEST_TRIGGER_SECONDS": "0.5",
    }
    command = [
        sys.executable,
        "-m",
        "shelfcast.cli",
        "run",
        "--data-dir",
        str(settings.data_dir),
        "--bootstrap",
        settings.bootstrap_servers,
    ]

    def start() -> subprocess.Popen[bytes]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        log = (settings.data_dir / "service.log").open("ab")
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    series = [("K", f"I{n}") for n in range(6)]
    events = [e for s, i in series for e in history(s, i, days=120)]
    proc = start()
    try:
        produce(settings, events[: len(events) // 2])
        actor = coordinator(retrain_config(settings))
        wait_for(lambda: ray.get(actor.status.remote())["running"] > 0, 180, "a running retrain")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        produce(settings, events[len(events) // 2 :] + events[:50])  # the rest, and resends
        proc = start()
        wait_for(
            lambda: set(forecast_keys(settings, 6, timeout=5)) >= {f"{s}|{i}" for s, i in series},
            300,
            "a forecast for every series",
        )
        wait_for(
            lambda: (
                DeltaTable(str(settings.delta_dir / "pos_sales"))
                .to_pyarrow_table(columns=["event_id"])
                .num_rows
                == len(events)
            ),
            60,
            "every event stored",
        )
        stored = DeltaTable(str(settings.delta_dir / "pos_sales")).to_pyarrow_table(
            columns=["event_id"]
        )
        ids = stored.column(0).to_pylist()
        assert len(ids) == len(set(ids)) == len(events)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                assert proc.wait(90) == 0
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
        try:
            ray.kill(ray.get_actor(COORDINATOR, namespace=settings.ray_namespace))
        except ValueError:
            pass


def test_drift_status_metrics_and_the_forecast_views(
    service: Callable[..., Settings], produce: Callable[..., int], tmp_path: Any
) -> None:
    import urllib.request

    from shelfcast.embedded import free_port
    from shelfcast.forecasts_view import format_forecast, plot_series, read_forecasts
    from shelfcast.status import gather_status, render_status

    port = free_port()
    settings = service(metrics_port=port)
    produce(settings, history("S1", "D", days=80))  # enough to validate: a drift ratio
    assert forecast_keys(settings, expect=1) == ["S1|D"]
    ThresholdStore(settings.data_dir).set({"min_new_events": "1000"})  # no retrain on new days
    wait_for(lambda: series_state(settings)["S1|D"]["status"] == "done", 60, "status done")

    # Actuals for the first forecast days: a day is scored once a later day has sales.
    start = date(2024, 1, 1) + timedelta(days=80)
    produce(
        settings,
        [sale(f"d{k}", "S1", "D", (start + timedelta(days=k)).isoformat(), 40.0) for k in range(3)],
    )

    def drift_rows() -> list[dict[str, Any]]:
        path = settings.delta_dir / "drift"
        return DeltaTable(str(path)).to_pyarrow_table().to_pylist()

    wait_for(lambda: len(drift_rows()) == 2, 60, "two drift rows")
    assert all(r["model_version"] == 1 and r["scaled_error"] > 0 for r in drift_rows())
    wait_for(lambda: (series_state(settings)["S1|D"]["drift_ratio"] or 0) > 0, 30, "drift ratio")

    # The batch that scored drift commits its offsets to Spark's checkpoint just after.
    wait_for(
        lambda: all(p["lag"] == 0 for p in gather_status(settings)["lag"].values()), 30, "no lag"
    )
    status = gather_status(settings)
    assert status["series"] == {"done": 1}
    assert status["coordinator"]["published"] == 1
    assert status["lag"] and all(p["lag"] == 0 for p in status["lag"].values())
    assert status["service"]["last_batch"]["stored"] > 0
    assert "queue: 0 queued" in render_status(status)

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    text = metrics.decode()
    assert "shelfcast_events_in_total 83.0" in text
    assert "shelfcast_forecasts_published_total 1.0" in text
    assert "shelfcast_drift_ratio_count" in text

    (forecast,) = list(read_forecasts(settings, follow=False, idle=1.0))
    assert "S1|D" in format_forecast(forecast) and "v1" in format_forecast(forecast)
    png = plot_series(settings, "S1|D", tmp_path / "d.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
