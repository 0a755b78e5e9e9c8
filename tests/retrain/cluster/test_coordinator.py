"""Waves on a real Ray head, real Optuna journal, real MLflow store and a real broker."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contracts import load_schema, parse_forecast
from retrain.cluster.client import coordinator
from retrain.stores.registry import CHAMPION, model_name
from shelfcast.retrain_command import run_wave
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings
from tests.support.retrain import RETRAIN_FAST, START
from tests.support.series import demand, write_daily
from tests.support.topics import read_topic
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FAST = RETRAIN_FAST


def test_two_waves_publish_one_valid_forecast_per_series_each_and_track_them(
    retrain_settings: Callable[..., Settings],
) -> None:
    from mlflow import MlflowClient

    settings = retrain_settings()
    series = {("S1", "I1"): demand(220, seed=1), ("S1", "I2"): demand(220, 5, seed=2)}
    write_daily(settings, series, START)
    keys = [(s, i, 0.0) for s, i in series]

    first = run_wave(settings, keys, cold=False)
    assert (first["done"], first["failed"]) == (2, 0), first["errors"]
    assert first["methods"] == {"tuned": 2}  # no history yet: cold

    # Seven more days at each series' own level (a jump would be drift: a full re-selection).
    levels = {("S1", "I1"): 20.0, ("S1", "I2"): 5.0}
    more = {k: demand(7, levels[k], seed=9) for k in series}
    write_daily(settings, more, date(2023, 8, 9), batch_id=1)
    second = run_wave(settings, keys, cold=False)
    assert second["done"] == 2 and second["methods"] == {"warm": 2}

    messages = read_topic(settings, settings.topic_forecasts, expect=4)
    schema = load_schema("forecast", 1)
    forecasts = []
    for msg in messages:
        forecast = parse_forecast(msg.value())
        jsonschema.validate(forecast.model_dump(mode="json"), schema)
        assert msg.key().decode() == forecast.key
        forecasts.append(forecast)
    assert Counter((f.key, f.model_version) for f in forecasts) == {
        ("S1|I1", 1): 1,
        ("S1|I1", 2): 1,
        ("S1|I2", 1): 1,
        ("S1|I2", 2): 1,
    }
    latest = {f.key: f for f in forecasts if f.model_version == 2}
    assert all(f.warm and f.data_through == date(2023, 8, 15) for f in latest.values())
    assert all(len(f.points) == 14 for f in forecasts)

    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    kinds = Counter(r.data.tags["shelfcast.kind"] for r in runs)
    # The group model's first retrain, and one more once the group's data is a week newer
    # (it runs beside the second wave, so it may still be running).
    assert 1 <= kinds.pop("group") <= 2
    assert kinds == {"wave": 2, "series": 4}
    waves = {r.info.run_id for r in runs if r.data.tags["shelfcast.kind"] == "wave"}
    for run in runs:
        if run.data.tags["shelfcast.kind"] == "group":
            continue
        if run.data.tags["shelfcast.kind"] == "series":
            assert run.data.tags["mlflow.parentRunId"] in waves
            assert {"validation_mase", "validation_mae", "trials", "seconds"} <= set(
                run.data.metrics
            )
        else:
            assert run.data.metrics["done"] == 2
    for key, forecast in latest.items():
        # Models of their own: a run and a registry version each (the serial is apart).
        version = client.get_model_version_by_alias(model_name(*key.split("|")), CHAMPION)
        assert int(version.version) == 2 and version.run_id == forecast.mlflow_run_id


def test_a_series_model_version_goes_on_from_its_champion_and_its_last_served_one(
    retrain_settings: Callable[..., Settings],
) -> None:
    """Its forecasts carried its registry versions before serials: its first serial comes
    after them; and never below the version the service last served."""
    from retrain.kernel.fallback import SeriesFit
    from retrain.stores.registry import Tracker

    settings = retrain_settings()
    version = write_daily(settings, {("S1", "I1"): demand(220)}, START)
    artifacts = retrain_config(settings).coordinator.artifact_dir
    assert artifacts is not None
    tracker = Tracker(settings.tracking_uri, settings.mlflow_experiment, artifacts.as_uri())
    fit = SeriesFit(method="tuned", data_through=date(2023, 8, 8), points=[], model_json="{}")
    for _ in range(3):
        tracker.record_series(None, "S1", "I1", fit, {})

    wave = run_wave(settings, [("S1", "I1", 0.0)], cold=False)
    assert wave["done"] == 1, wave["errors"]
    [message] = read_topic(settings, settings.topic_forecasts, 1)
    assert parse_forecast(message.value()).model_version == 4

    # The service hands a series over with its last served version: a study lost or moved
    # (a new shard count) never takes the next one below it.
    import ray

    actor = coordinator(retrain_config(settings))
    again = ray.get(actor.submit.remote([("S1", "I1", 0.0, None, "forced", 9)], version))
    wait_for(lambda: ray.get(actor.wave.remote(again["wave_id"]))["finished_at"] is not None, 120)
    versions = [
        parse_forecast(m.value()).model_version
        for m in read_topic(settings, settings.topic_forecasts, 2)
    ]
    assert sorted(versions) == [4, 10]


def test_resubmitting_a_running_series_trains_it_once_more_on_the_newest_version(
    retrain_settings: Callable[..., Settings],
) -> None:
    import ray

    settings = retrain_settings(retrain_cold_trials=10)
    version = write_daily(settings, {("S1", "I1"): demand(220)}, START)
    actor = coordinator(retrain_config(settings))
    ray.get(actor.submit.remote([("S1", "I1", 0.0)], version))
    wait_for(lambda: ray.get(actor.status.remote())["running"] == 1)
    newer = write_daily(settings, {("S1", "I1"): demand(3)}, date(2023, 8, 9), batch_id=1)
    for _ in range(3):
        last = ray.get(actor.submit.remote([("S1", "I1", 0.0)], newer))
    wait_for(lambda: ray.get(actor.wave.remote(last["wave_id"]))["finished_at"] is not None, 120)

    forecasts = [
        parse_forecast(m.value()) for m in read_topic(settings, settings.topic_forecasts, 2)
    ]
    assert sorted((f.data_version, f.model_version) for f in forecasts) == [
        (version, 1),
        (newer, 2),
    ]


def test_a_series_that_keeps_failing_is_poisoned_until_its_data_changes(
    retrain_settings: Callable[..., Settings],
) -> None:
    import ray

    settings = retrain_settings()
    version = write_daily(settings, {("S1", "I1"): demand(100)}, START)
    summary = run_wave(settings, [("S9", "missing", 0.0), ("S1", "I1", 0.0)], cold=False)
    assert (summary["done"], summary["failed"]) == (1, 1)
    assert "no rows in daily_sales" in summary["errors"]["S9|missing"]

    # A new handle by name (as a restarted driver gets) sees the same queue state.
    actor = coordinator(retrain_config(settings))
    again = ray.get(actor.submit.remote([("S9", "missing", 0.0)], version))
    assert again["skipped"] == 1 and again["total"] == 0
    status = ray.get(actor.status.remote())
    assert status["poisoned"]["S9|missing"]["version"] == version
    updates = ray.get(actor.drain_updates.remote())
    assert [u["status"] for u in updates if u["item_id"] == "missing"][-1] == "poison"
    assert [u["attempts"] for u in updates if u["status"] == "queued" and u.get("error")] == [1]


def test_series_retrained_in_one_task_share_it_and_fail_alone(
    two_cpus: str, retrain_settings: Callable[..., Settings]
) -> None:
    from mlflow import MlflowClient

    from retrain.stores.registry import Tracker

    # Paced by the first wave (until a series has finished, a task takes one).
    settings = retrain_settings(
        ray_address=two_cpus, retrain_group_enabled=False, retrain_batch_seconds=3600
    )
    series = {("S1", f"I{k}"): demand(220, 5.0 + k, seed=k) for k in range(1, 4)}
    write_daily(settings, series, START)
    keys = [(s, i, 0.0) for s, i in series]
    assert run_wave(settings, keys[:1], cold=False)["done"] == 1
    summary = run_wave(settings, [*keys, ("S1", "missing", 0.0)], cold=False)
    assert (summary["done"], summary["failed"]) == (3, 1), summary["errors"]
    assert "no rows in daily_sales" in summary["errors"]["S1|missing"]

    messages = read_topic(settings, settings.topic_forecasts, 4)
    forecasts = [
        f
        for f in (parse_forecast(m.value()) for m in messages)
        if f.model_version == 2 or f.key != "S1|I1"
    ]
    client = MlflowClient(settings.tracking_uri)
    wave_run = client.get_run(forecasts[0].mlflow_run_id).data.tags["mlflow.parentRunId"]
    tracker = Tracker(settings.tracking_uri, settings.mlflow_experiment, create=False)
    rows = tracker.series_table(wave_run)
    assert sorted(r["series"] for r in rows) == sorted(f.key for f in forecasts)
    # Four due series on two CPUs: two tasks of two; the missing one's mate went on.
    assert sorted(Counter(r["batch"] for r in rows).values()) == [1, 2]


def test_a_worker_killed_mid_task_is_retried_and_the_wave_completes(
    retrain_settings: Callable[..., Settings],
) -> None:
    import ray

    # cmdstan's ~80 ms per fit makes this task take seconds: in process it could end before
    # the kill lands.
    settings = retrain_settings(
        retrain_cold_trials=30, retrain_max_attempts=3, fit_backend="cmdstan"
    )
    version = write_daily(settings, {("S1", "I1"): demand(220)}, START)
    actor = coordinator(retrain_config(settings))
    wave = ray.get(actor.submit.remote([("S1", "I1", 0.0)], version))
    wait_for(lambda: bool(ray.get(actor.running_pids.remote())))
    pid = ray.get(actor.running_pids.remote())["S1|I1"]
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: ray.get(actor.wave.remote(wave["wave_id"]))["finished_at"] is not None, 180)

    assert ray.get(actor.wave.remote(wave["wave_id"]))["done"] == 1
    forecasts = read_topic(settings, settings.topic_forecasts, expect=1)
    assert len(forecasts) == 1
    states = [u["status"] for u in ray.get(actor.drain_updates.remote())]
    assert states == ["queued", "running", "queued", "running", "done"]


def test_retrain_command_runs_a_wave_from_its_own_driver(
    retrain_settings: Callable[..., Settings],
) -> None:
    settings = retrain_settings()
    write_daily(settings, {("7", "3"): demand(120)}, START)
    env = {
        **os.environ,
        **{f"SHELFCAST_{k.upper()}": str(v) for k, v in FAST.items()},
        "SHELFCAST_RAY_ADDRESS": settings.ray_address,
        "SHELFCAST_RAY_NAMESPACE": settings.ray_namespace,
        "SHELFCAST_TOPIC_FORECASTS": settings.topic_forecasts,
    }

    def retrain(*series: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "shelfcast.cli",
                "retrain",
                "--data-dir",
                str(settings.data_dir),
                "--bootstrap",
                settings.bootstrap_servers,
                "--series",
                *series,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    done = retrain("7|3")
    assert done.returncode == 0, done.stderr
    assert "1 series" in done.stdout and "done 1 (tuned 1)" in done.stdout
    bad = retrain("7-3")
    assert bad.returncode == 2 and "STORE|ITEM" in bad.stderr


def test_a_series_that_cannot_be_recorded_is_retried_and_not_published_until_it_is(
    retrain_settings: Callable[..., Settings],
) -> None:
    from mlflow import MlflowClient

    settings = retrain_settings()
    first = write_daily(settings, {("S1", "I1"): demand(100)}, START)
    assert run_wave(settings, [("S1", "I1", 0.0)], cold=False)["done"] == 1
    # A file where the artifact folder was: every model file write fails.
    aside = settings.artifact_dir.with_name("artifacts-aside")
    settings.artifact_dir.rename(aside)
    settings.artifact_dir.write_text("not a folder")
    write_daily(settings, {("S1", "I2"): demand(100)}, START, batch_id=1)

    failed = run_wave(settings, [("S1", "I2", 0.0)], cold=False)
    assert (failed["done"], failed["failed"]) == (0, 1)
    assert "Recording S1|I2 in MLflow" in failed["errors"]["S1|I2"]

    settings.artifact_dir.unlink()
    aside.rename(settings.artifact_dir)
    newer = write_daily(settings, {("S1", "I2"): demand(3)}, date(2023, 4, 11), batch_id=2)
    assert run_wave(settings, [("S1", "I2", 0.0)], cold=False)["done"] == 1

    forecasts = [
        parse_forecast(m.value()) for m in read_topic(settings, settings.topic_forecasts, 2)
    ]
    assert sorted((f.key, f.data_version) for f in forecasts) == [
        ("S1|I1", first),
        ("S1|I2", newer),
    ]
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment is not None
    statuses = Counter(
        r.info.status
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags["shelfcast.kind"] == "series"
    )
    assert statuses == {"FINISHED": 2, "FAILED": settings.retrain_max_attempts}


def test_a_hung_task_is_stopped_at_the_timeout_and_retried(
    retrain_settings: Callable[..., Settings],
) -> None:
    import ray

    # A cold selection over the model families lasts seconds, so the task still runs when it
    # is frozen, and a retry ends well within the timeout even on a busy machine (with
    # cmdstan and 12 trials, every attempt sometimes ran over 30 s).
    settings = retrain_settings(
        retrain_cold_trials=3, retrain_max_attempts=3, retrain_task_timeout_seconds=30
    )
    version = write_daily(settings, {("S1", "I1"): demand(220)}, START)
    actor = coordinator(retrain_config(settings))
    wave = ray.get(actor.submit.remote([("S1", "I1", 0.0)], version))
    wait_for(lambda: bool(ray.get(actor.running_pids.remote())))
    pid = ray.get(actor.running_pids.remote())["S1|I1"]
    os.kill(pid, signal.SIGSTOP)  # hangs: no exit, no error, never a result
    try:
        wait_for(
            lambda: ray.get(actor.wave.remote(wave["wave_id"]))["finished_at"] is not None, 150
        )
        assert ray.get(actor.wave.remote(wave["wave_id"]))["done"] == 1
        updates = ray.get(actor.drain_updates.remote())
        assert [u["status"] for u in updates] == ["queued", "running", "queued", "running", "done"]
        assert "ran over 30 s" in updates[2]["error"]
        assert len(read_topic(settings, settings.topic_forecasts, expect=1)) == 1
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30)  # killed: its CPU is free
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_kafka_outage_retries_the_publish_not_the_task(
    retrain_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    import ray
    from mlflow import MlflowClient

    from shelfcast.embedded import free_port, start_broker, stop_process
    from shelfcast.kafka import ensure_topics
    from shelfcast.settings import load_settings

    # The forecasts go to a broker that is not there yet: it starts once the coordinator has
    # waited for Kafka's confirmation longer than its report of a slow delivery (10 s) and
    # far longer than the task's retry backoff, so a task retried for it would show.
    address = f"127.0.0.1:{free_port()}"
    settings = retrain_settings().model_copy(update={"bootstrap_servers": address})
    version = write_daily(settings, {("S1", "I1"): demand(120)}, START)
    actor = coordinator(retrain_config(settings))
    wave = ray.get(actor.submit.remote([("S1", "I1", 0.0)], version))
    wait_for(lambda: any(u["status"] == "running" for u in ray.get(actor.peek_updates.remote())))
    wait_for(
        lambda: any(
            "not confirmed by Kafka" in (u.get("error") or "")
            for u in ray.get(actor.peek_updates.remote())
        ),
        120,
        "the coordinator to report the forecast unconfirmed",
    )
    broker = start_broker(load_settings(data_dir=tmp_path / "late", bootstrap_servers=address))
    try:
        ensure_topics(settings)
        wait_for(
            lambda: ray.get(actor.wave.remote(wave["wave_id"]))["finished_at"] is not None, 120
        )
        assert ray.get(actor.wave.remote(wave["wave_id"]))["done"] == 1
        (message,) = read_topic(settings, settings.topic_forecasts, expect=1)
        assert parse_forecast(message.value()).model_version == 1
        client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
        versions = client.search_model_versions(f"name='{model_name('S1', 'I1')}'")
        assert [int(v.version) for v in versions] == [1]
        updates = ray.get(actor.drain_updates.remote())
        assert [u["status"] for u in updates if u["status"] != "running"] == ["queued", "done"]
        assert any("not confirmed by Kafka" in (u.get("error") or "") for u in updates)
    finally:
        stop_process(broker.pid)


def test_poison_holds_while_the_series_own_data_stays_whatever_other_batches_commit(
    retrain_settings: Callable[..., Settings],
) -> None:
    import ray

    settings = retrain_settings()
    version = write_daily(settings, {("S1", "I1"): demand(100)}, START)
    actor = coordinator(retrain_config(settings))
    first = ray.get(actor.submit.remote([("S9", "missing", 0.0, 12)], version))
    wait_for(lambda: ray.get(actor.wave.remote(first["wave_id"]))["finished_at"] is not None)
    assert ray.get(actor.status.remote())["poisoned"]["S9|missing"]["data"] == 12

    # Another series' micro-batch: a newer daily_sales version, S9|missing unchanged.
    newer = write_daily(settings, {("S1", "I1"): demand(3)}, date(2023, 4, 11), batch_id=1)
    again = ray.get(actor.submit.remote([("S9", "missing", 0.0, 12)], newer))
    assert again["skipped"] == 1 and again["total"] == 0
    grown = ray.get(actor.submit.remote([("S9", "missing", 0.0, 13)], newer))
    assert grown["skipped"] == 0 and grown["total"] == 1


def test_a_retrain_run_from_another_folder_is_refused_and_changes_nothing(
    retrain_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = retrain_settings()
    write_daily(settings, {("S1", "I1"): demand(100)}, START)
    coordinator(retrain_config(settings))  # the service's coordinator, on the service's tables
    # The same command in another folder: the default data dir is that folder's .shelfcast.
    elsewhere = tmp_path / "elsewhere"
    write_daily(
        settings.model_copy(update={"data_dir": elsewhere / ".shelfcast"}),
        {("S2", "I2"): demand(100)},
        START,
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SHELFCAST_")},
        **{f"SHELFCAST_{k.upper()}": str(v) for k, v in FAST.items()},
        "SHELFCAST_RAY_ADDRESS": settings.ray_address,
        "SHELFCAST_RAY_NAMESPACE": settings.ray_namespace,
        "SHELFCAST_TOPIC_FORECASTS": settings.topic_forecasts,
        "SHELFCAST_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "shelfcast.cli", "retrain", "--series", "S2|I2"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"coordinator: {settings.data_dir}, yours: {elsewhere / '.shelfcast'}" in done.stderr
    assert "SHELFCAST_RAY_NAMESPACE" in done.stderr
    # The service's retrains still read the service's tables.
    assert run_wave(settings, [("S1", "I1", 0.0)], cold=False)["done"] == 1


class Hung:
    """A coordinator that takes every call and never answers (a wedged actor or head)."""

    def ping(self) -> None:
        time.sleep(3600)

    def identity(self) -> None:
        time.sleep(3600)

    def configure(self, settings: Any) -> None:
        time.sleep(3600)

    def submit(self, *args: Any) -> None:
        time.sleep(3600)

    def peek_updates(self, *args: Any) -> None:
        time.sleep(3600)

    def ack_updates(self, *args: Any) -> None:
        time.sleep(3600)


def test_a_coordinator_that_does_not_answer_never_holds_up_the_hand_off(
    retrain_settings: Callable[..., Settings],
) -> None:
    import ray

    from retrain.cluster.client import COORDINATOR, CoordinatorClient

    settings = retrain_settings()
    version = write_daily(settings, {("S1", "I1"): demand(100)}, START)
    hung = (
        ray.remote(Hung)
        .options(
            name=COORDINATOR,
            namespace=settings.ray_namespace,
            lifetime="detached",
            num_cpus=0,
            max_concurrency=32,
        )
        .remote()
    )
    client = CoordinatorClient(retrain_config(settings), timeout=2)
    try:
        # What the hand-off does in every micro-batch, with its lock held.
        for batch in range(3):
            began = time.monotonic()
            assert client.peek_updates() == []
            client.submit([("S1", "I1", 1.0, 100)], version)
            client.ack_updates(0)
            assert time.monotonic() - began < 1.5, f"batch {batch} waited for Ray"
            time.sleep(1)

        # The outage ends (the wedged actor is gone): what was handed over arrives, and the
        # news comes back through the same non-blocking calls.
        ray.kill(hung)

        def done() -> list[dict[str, Any]]:
            return [u for u in client.peek_updates() if u["status"] == "done"]

        wait_for(lambda: bool(done()), 120)
        (update,) = done()
        assert update["item_id"] == "I1" and update["version"] == version
        client.ack_updates(max(u["seq"] for u in client.peek_updates()))
        actor = ray.get_actor(COORDINATOR, namespace=settings.ray_namespace)
        wait_for(lambda: ray.get(actor.peek_updates.remote()) == [], 10)
        assert client.peek_updates() == []
    finally:
        client.close()
