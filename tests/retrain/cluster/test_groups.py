"""Group models on a real Ray head, Delta tables, MLflow store and broker: trained before their
series' first wave, reused by later waves, retrained on their trigger, and a broken one falls
back to the series' own families with the reason on the forecast."""

from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest

from contracts import parse_forecast
from retrain.stores.registry import CHAMPION, group_model_name
from shelfcast.retrain_command import run_wave
from shelfcast.settings import Settings
from shelfcast.status import coordinator_status
from tests.support.series import demand, write_daily
from tests.support.topics import read_topic
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

START = date(2023, 1, 1)
SERIES = {("S1", "I1"): 20.0, ("S1", "I2"): 8.0, ("S2", "I1"): 30.0}


def _write(settings: Settings, days: int, first: date, batch_id: int, seed: int = 0) -> int:
    return write_daily(
        settings,
        {k: demand(days, level, seed=seed + n) for n, (k, level) in enumerate(SERIES.items())},
        first,
        batch_id=batch_id,
    )


def _group_versions(settings: Settings) -> list[int]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    try:
        found = client.search_model_versions(f"name = '{group_model_name('all')}'")
    except MlflowException:
        return []
    return sorted(int(v.version) for v in found)


def _table(settings: Settings, run_id: str) -> list[dict[str, Any]]:
    """The series table of the wave that ``run_id`` (a wave's run, or a series' own run under
    it) belongs to."""
    from mlflow import MlflowClient

    from retrain.stores.registry import Tracker

    run = MlflowClient(settings.tracking_uri).get_run(run_id)
    wave = (
        run_id if run.data.tags["shelfcast.kind"] == "wave" else run.data.tags["mlflow.parentRunId"]
    )
    return Tracker(settings.tracking_uri, settings.mlflow_experiment, create=False).series_table(
        wave
    )


def test_a_group_model_trains_first_then_serves_later_waves_and_retrains_a_week_on(
    two_cpus: str, retrain_settings: Callable[..., Settings]
) -> None:
    # Once paced, batches of two. The group asks for both CPUs: its first model gets them
    # (the series wait for it), its retrain beside a wave one (group_task_cpus).
    settings = retrain_settings(
        ray_address=two_cpus, retrain_batch_seconds=3600, retrain_group_cpus=2
    )
    _write(settings, 240, START, 0)
    keys = [(s, i, 0.0) for s, i in SERIES]

    first = run_wave(settings, keys, cold=False)
    assert (first["done"], first["failed"]) == (3, 0), first["errors"]
    assert _group_versions(settings) == [1]  # trained before the series ran, once
    # Its steps reached the coordinator (shelfcast status shows them while it trains).
    group = coordinator_status(settings)["groups"]["all"]
    assert group["progress"] == "recording the model in MLflow" and not group["training"]

    # Three more days: under the week that retrains the group; every series reuses model 1.
    _write(settings, 3, START + timedelta(days=240), 1, seed=10)
    second = run_wave(settings, keys, cold=False)
    assert second["done"] == 3 and second["methods"] == {"warm": 3}
    assert _group_versions(settings) == [1]
    # Three due series on two CPUs: the store S1's two in one task and one prediction call.
    served = [parse_forecast(m.value()) for m in read_topic(settings, settings.topic_forecasts, 6)]
    rows = _table(settings, next(f for f in served if f.model_version == 2).mlflow_run_id)
    assert sorted(Counter(r["batch"] for r in rows).values()) == [1, 2]
    assert len({r["batch"] for r in rows if r["store_id"] == "S1"}) == 1

    # Four more: the group's data is now a week past its model's; a retrain runs beside.
    _write(settings, 4, START + timedelta(days=243), 2, seed=20)
    run_wave(settings, keys, cold=False)
    wait_for(lambda: _group_versions(settings) == [1, 2], 120)

    forecasts = [
        parse_forecast(m.value()) for m in read_topic(settings, settings.topic_forecasts, 9)
    ]
    assert len(forecasts) == 9
    # Whichever family won, the lineage says when the group model took part.
    for forecast in forecasts:
        uses = forecast.family == "global" or (forecast.group_model_version is not None)
        assert uses == (forecast.group_model_version == 1), forecast
    assert any(f.group_model_version == 1 for f in forecasts)

    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    champion = client.get_model_version_by_alias(group_model_name("all"), CHAMPION)
    assert int(champion.version) == 2 and champion.tags["series"] == "3"
    run = client.get_run(str(champion.run_id))
    assert run.data.tags["shelfcast.kind"] == "group"
    assert {"validation_mae", "fit_core_seconds"} <= set(run.data.metrics)
    first = client.get_run(str(client.get_model_version(group_model_name("all"), "1").run_id))
    assert (first.data.params["cpus"], run.data.params["cpus"]) == ("2", "1")


def test_a_new_item_is_forecast_by_the_group_model_from_its_first_days(
    retrain_settings: Callable[..., Settings],
) -> None:
    # More CPUs than any node of the test's head has: the group takes what a node has (a
    # task asking for more would never be scheduled, and the series would wait in vain).
    settings = retrain_settings(retrain_group_cpus=4)
    _write(settings, 240, START, 0)
    version = write_daily(
        settings, {("S1", "NEW"): demand(5, 15.0, seed=7)}, START + timedelta(days=235), 1
    )
    del version
    keys = [(s, i, 0.0) for s, i in SERIES] + [("S1", "NEW", 0.0)]
    wave = run_wave(settings, keys, cold=False)
    assert wave["done"] == 4, wave["errors"]
    forecasts = {
        f.key: f
        for f in (
            parse_forecast(m.value()) for m in read_topic(settings, settings.topic_forecasts, 4)
        )
    }
    new = forecasts["S1|NEW"]
    assert new.family == "global" and new.method == "tuned"
    assert new.group_model_version == 1
    assert max(p.yhat for p in new.points) > 0
    assert all(p.yhat_lower <= p.yhat <= p.yhat_upper for p in new.points)

    # The group model alone made it: no run or model version of its own. The forecast names
    # its wave's run, whose series table holds its row; its serial grows without a version,
    # through a cold wave that starts its study over too.
    from mlflow import MlflowClient

    from retrain.stores.registry import Tracker

    tracker = Tracker(settings.tracking_uri, settings.mlflow_experiment, create=False)
    assert tracker.champion_version("S1", "NEW") == 0
    run = MlflowClient(settings.tracking_uri).get_run(new.mlflow_run_id)
    assert run.data.tags["shelfcast.kind"] == "wave"
    rows = {r["series"]: r for r in tracker.series_table(new.mlflow_run_id)}
    assert set(rows) == set(forecasts)  # every series of the wave, own models too
    row = rows["S1|NEW"]
    assert (row["family"], row["group_model_version"], row["registry_version"]) == (
        "global",
        1,
        None,
    )
    assert row["model_version"] == new.model_version == 1 and row["run_id"] == new.mlflow_run_id
    assert rows["S1|I1"]["registry_version"] == 1  # a model of its own: a run and a version
    assert rows["S1|I1"]["run_id"] == forecasts["S1|I1"].mlflow_run_id != new.mlflow_run_id

    again = run_wave(settings, [("S1", "NEW", 0.0)], cold=True)
    assert again["done"] == 1, again["errors"]
    serials = sorted(
        f.model_version
        for f in (
            parse_forecast(m.value()) for m in read_topic(settings, settings.topic_forecasts, 5)
        )
        if f.key == "S1|NEW" and f.family == "global"
    )
    assert serials == [1, 2]
    assert tracker.champion_version("S1", "NEW") == 0


def test_a_corrupt_group_model_falls_back_to_the_series_families_with_the_reason(
    retrain_settings: Callable[..., Settings],
) -> None:
    from retrain.stores.registry import Tracker

    settings = retrain_settings()
    _write(settings, 240, START, 0)
    # The registry serves a group model whose file is not one (a partial upload, a bad
    # disk): the coordinator restores it at start, and each task fails to load it.
    settings.artifact_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(
        settings.tracking_uri, settings.mlflow_experiment, settings.artifact_dir.as_uri()
    )
    tracker.record_group("all", b"not a model", {}, {}, START + timedelta(days=239), 3, 0, None)
    keys = [(s, i, 0.0) for s, i in SERIES]
    wave = run_wave(settings, keys, cold=False)
    assert wave["done"] == 3, wave["errors"]

    forecasts = [
        parse_forecast(m.value()) for m in read_topic(settings, settings.topic_forecasts, 3)
    ]
    broken = "group model all v1: RetrainError: The group model file is unreadable"
    fell_back = [f for f in forecasts if broken in (f.fallback_reason or "")]
    assert fell_back, [f.fallback_reason for f in forecasts]
    for forecast in fell_back:
        assert forecast.method == "tuned" and forecast.family != "global"
        assert forecast.group_model_version is None
    # The first series to find it broken has the group retrained: the rest (and later
    # waves) use the new model.
    wait_for(lambda: _group_versions(settings) == [1, 2], 120)
    assert all(f.group_model_version in (None, 2) for f in forecasts)
