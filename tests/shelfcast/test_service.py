"""The whole service on real parts: Spark query, broker, Ray coordinator, MLflow, Delta."""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from deltalake import DeltaTable

from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings
from streaming.thresholds import ThresholdStore
from tests.support.events import history, sale
from tests.support.service import FAST, ServiceProcess, last_handoff_at
from tests.support.tables import series_state
from tests.support.topics import forecast_keys
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


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
    # Hand-offs with the high threshold after the row is in: the batches' and an idle tick.
    seen = datetime.now(UTC)
    wait_for(
        lambda: (last_handoff_at(settings) or seen) > seen + timedelta(seconds=1),
        30,
        "an idle hand-off after the history",
    )
    assert forecast_keys(settings, expect=0, timeout=2) == []
    assert series_state(settings)["S1|C"]["status"] is None

    thresholds.set({"min_new_events": "10"})
    assert forecast_keys(settings, expect=1) == ["S1|C"]
    assert [h["key"] for h in thresholds.history()] == ["min_new_events", "min_new_events"]


def test_service_killed_mid_wave_loses_and_duplicates_nothing_and_finishes_the_wave(
    spark: Any,
    make_settings: Callable[..., Settings],
    service_on: Callable[..., ServiceProcess],
    produce: Callable[..., int],
) -> None:
    import ray

    from retrain.cluster.client import coordinator

    settings = make_settings(**{**FAST, "retrain_cold_trials": 6})
    svc = service_on(settings, SHELFCAST_RETRAIN_COLD_TRIALS="6")
    settings = svc.settings

    series = [("K", f"I{n}") for n in range(6)]
    events = [e for s, i in series for e in history(s, i, days=120)]
    svc.start()
    try:
        produce(settings, events[: len(events) // 2])
        actor = coordinator(retrain_config(settings))
        wait_for(lambda: ray.get(actor.status.remote())["running"] > 0, 180, "a running retrain")
        svc.kill9()
        produce(settings, events[len(events) // 2 :] + events[:50])  # the rest, and resends
        svc.start()
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
        assert svc.stop() in (None, 0), svc.log()


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
