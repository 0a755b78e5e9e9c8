"""The cluster-mode stores of docker-compose.yml on real processes: Optuna studies in
PostgreSQL and MLflow's tracking server on PostgreSQL (bench/postgres.py starts both).

Settings come the compose way: ``SHELFCAST_MLFLOW_TRACKING_URI`` in the environment and the
Optuna database URL, password and all, as the secret file ``shelfcast_optuna_storage`` in
``SHELFCAST_SECRETS_DIR``. No password may show in a command line, a log or a repr.
"""

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from bench.postgres import OPTUNA_SECRET, TRACKING_ENV, MlflowServer, PostgresCluster
from contracts import parse_forecast
from retrain.kernel.fallback import SeriesFit
from retrain.prophet.fit import Params
from retrain.stores.registry import CHAMPION, Tracker, model_name
from retrain.stores.studies import (
    StudyRef,
    legacy_study,
    open_study,
    save_warm_state,
    study_name,
    warm_state,
)
from retrain.stores.study_table import StudyTable
from shelfcast.cli import main
from shelfcast.retrain_command import run_wave
from shelfcast.settings import Settings
from tests.support.series import demand, write_daily
from tests.support.topics import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

START = date(2023, 1, 1)
INIT = {"k": 0.1, "m": 0.5, "sigma_obs": 0.2, "delta": [0.0] * 3, "beta": [0.0] * 4}


def passwords(postgres: PostgresCluster) -> list[str]:
    return [db.password.get_secret_value() for db in postgres.databases.values()]


@pytest.fixture
def cluster_env(
    postgres: PostgresCluster,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """The compose file's way in: the tracking server's URL in the environment, the Optuna
    URL (with its password) as a secret file."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    secret = secrets / OPTUNA_SECRET
    secret.write_text(postgres.databases["optuna"].url().get_secret_value())
    secret.chmod(0o600)
    monkeypatch.setenv("SHELFCAST_SECRETS_DIR", str(secrets))
    monkeypatch.setenv(TRACKING_ENV, mlflow_server.url)
    yield


def test_studies_in_postgresql_open_save_warm_state_and_start_over(
    postgres: PostgresCluster,
) -> None:
    import optuna

    url = postgres.databases["optuna"].url().get_secret_value()
    ref = StudyRef(Path("/nonexistent"), 1, url)
    name = study_name("S-studies", uuid.uuid4().hex[:6])
    study = open_study(ref, name, cold=True)
    study.enqueue_trial(Params().as_dict())
    params = Params(0.2, 3.0, "multiplicative")
    save_warm_state(study, params.as_dict(), INIT, {"family": "prophet"})

    again = open_study(ref, name, cold=False)
    assert again._study_id == study._study_id
    state = warm_state(again)
    assert state.params == params and state.stan_init == INIT
    assert state.choice == {"family": "prophet"}
    assert name in optuna.get_all_study_names(ref.storage(name))

    # The series' study table in the same database: the study above moves at its first save.
    table = StudyTable(Path("/nonexistent"), 1, url, keep=5)
    moved = table.open(name, cold=False, legacy=legacy_study(ref))
    assert moved.warm.params == params and moved.serial == 0
    table.save(moved, 3)
    assert table.rows(name) == (1, 0)  # the enqueued trial never ran: no trial kept
    kept = table.open(name, cold=False)
    assert kept.serial == 3 and kept.warm.params == params
    assert table.open(name, cold=True).serial == 3  # cold: the serial stays

    fresh = open_study(ref, name, cold=True)  # cold starts over
    assert fresh.trials == [] and warm_state(fresh).params is None


@pytest.fixture
def cluster_settings(
    retrain_settings: Callable[..., Settings], cluster_env: None
) -> Callable[..., Settings]:
    """Settings on the session's Ray head and the cluster stores; coordinators killed after."""
    return retrain_settings


def test_two_waves_on_postgresql_and_the_tracking_server_warm_start_and_keep_the_champion(
    cluster_settings: Callable[..., Settings],
    postgres: PostgresCluster,
    mlflow_server: MlflowServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mlflow import MlflowClient

    began = time.time()
    store = f"S{uuid.uuid4().hex[:6]}"
    settings = cluster_settings(mlflow_experiment=f"stores-{store}")
    assert settings.tracking_uri == mlflow_server.url
    assert settings.optuna_storage is not None
    assert settings.optuna_storage.get_secret_value().startswith("postgresql://optuna:")
    series = {(store, "I1"): demand(220, seed=1), (store, "I2"): demand(220, 5, seed=2)}
    write_daily(settings, series, START)
    keys = [(s, i, 0.0) for s, i in series]

    first = run_wave(settings, keys, cold=False)
    assert (first["done"], first["failed"]) == (2, 0), first["errors"]
    levels = {(store, "I1"): 20.0, (store, "I2"): 5.0}
    write_daily(settings, {k: demand(7, levels[k], seed=9) for k in series}, date(2023, 8, 9), 1)
    second = run_wave(settings, keys, cold=False)
    assert (second["done"], second["failed"]) == (2, 0), second["errors"]
    assert second["methods"] == {"warm": 2}  # warm: the studies were found in PostgreSQL

    forecasts = [
        parse_forecast(m.value()) for m in read_topic(settings, settings.topic_forecasts, 4)
    ]
    assert Counter((f.key, f.model_version) for f in forecasts) == {
        (f"{s}|{i}", v): 1 for s, i in series for v in (1, 2)
    }
    # Studies live in PostgreSQL's study table, not in files under the data dir.
    url = settings.optuna_storage.get_secret_value()
    table = StudyTable(settings.optuna_dir, 1, url)
    for s, i in series:
        state_rows, trial_rows = table.rows(study_name(s, i))
        assert state_rows == 1 and trial_rows > 0
    assert not settings.optuna_dir.exists() or not list(settings.optuna_dir.iterdir())
    # Runs, versions and the champion alias on the server; model files in its artifact folder.
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    for s, i in series:
        champion = client.get_model_version_by_alias(model_name(s, i), CHAMPION)
        latest = next(f for f in forecasts if f.key == f"{s}|{i}" and f.model_version == 2)
        assert int(champion.version) == 2 and champion.run_id == latest.mlflow_run_id
        assert latest.warm
        assert str(champion.source).startswith("mlflow-artifacts:/")
    assert len(list(mlflow_server.artifacts.rglob("model.json"))) >= 4
    assert not settings.mlflow_db.exists() and not list(settings.data_dir.rglob("model.json"))

    # The passwords: in no command line, log or repr.
    secret = passwords(postgres)
    shown = [repr(settings), str(settings.model_dump()), caplog.text, *command_lines()]
    shown += [postgres.log_path.read_text(), mlflow_server.log_path.read_text()]
    shown += ray_logs_since(began)
    assert not [text[:200] for text in shown if any(p in text for p in secret)]


def command_lines() -> list[str]:
    """Every readable process's command line (ours run as root or as ourselves)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def ray_logs_since(began: float) -> list[str]:
    """The Ray logs written during the test (the session's head writes under /tmp/ray)."""
    texts = []
    for path in Path("/tmp/ray").glob("session_*/logs/*"):
        try:
            if path.is_file() and path.stat().st_mtime >= began - 1:
                texts.append(path.read_text(errors="replace"))
        except OSError:
            continue
    return texts


FIT = SeriesFit(method="tuned", data_through=date(2024, 1, 1), points=[], model_json="{}")


def test_prune_models_on_the_tracking_server_keeps_the_newest_and_the_champion(
    cluster_env: None,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow import MlflowClient

    store = f"S{uuid.uuid4().hex[:6]}"
    tracker = Tracker(mlflow_server.url, f"prune-{store}")
    for _ in range(5):
        tracker.record_series(None, store, "I1", FIT, {})
    name = model_name(store, "I1")
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    client.set_registered_model_alias(name, CHAMPION, "1")  # a rollback to v1
    sources = {int(v.version): v.source for v in client.search_model_versions(f"name='{name}'")}
    files_before = len(list(mlflow_server.artifacts.rglob("model.json")))

    assert main(["prune-models", "--data-dir", str(tmp_path), "--keep", "2"]) == 0
    assert "deleted 2 model versions of 1 series" in capsys.readouterr().out

    left = client.search_model_versions(f"name='{name}'")
    assert sorted(int(v.version) for v in left) == [1, 4, 5]
    assert len(list(mlflow_server.artifacts.rglob("model.json"))) == files_before - 2
    assert all(str(sources[v]).startswith("mlflow-artifacts:/") for v in (2, 3))
    assert Tracker(mlflow_server.url, f"prune-{store}").champion_json(store, "I1") == "{}"
