"""Registered model names and credential redaction of the MLflow edge."""

import re
from datetime import date
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from retrain.kernel.fallback import SeriesFit
from retrain.stores.registry import Tracker, _safe, model_name, redact

COLLIDING = [
    (("a.b", "c"), ("a", "b.c")),
    (("A B", "x"), ("A_B", "x")),
    (("S1", "I/1"), ("S1", "I:1")),
    (("S%2E", "x"), ("S.", "x")),
    (("é", "x"), ("%C3%A9", "x")),
]


def _decode(name: str) -> tuple[str, str]:
    prefix, store, item = name.split(".")
    assert prefix == "shelfcast"
    return unquote(store), unquote(item)


@pytest.mark.parametrize(("one", "other"), COLLIDING)
def test_model_names_are_one_per_series(one: tuple[str, str], other: tuple[str, str]) -> None:
    assert model_name(*one) != model_name(*other)
    for series in (one, other):
        name = model_name(*series)
        assert re.fullmatch(r"[A-Za-z0-9_.%-]+", name), name
        assert _decode(name) == series


def test_plain_names_keep_the_names_they_had() -> None:
    assert model_name("S1", "I1") == "shelfcast.S1.I1"
    assert model_name("store_1", "SKU-9") == "shelfcast.store_1.SKU-9"
    assert model_name("A B", "x") == "shelfcast.A%20B.x"


@pytest.mark.integration
def test_the_last_good_model_is_the_series_own(tmp_path: Path) -> None:
    (tmp_path / "mlflow").mkdir()
    tracker = Tracker(
        f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "shelfcast",
        artifact_location=str(tmp_path / "mlflow" / "artifacts"),
    )
    for (store, item), (store2, item2) in COLLIDING[:2]:
        for s, i in ((store, item), (store2, item2)):
            fit = SeriesFit(
                method="tuned",
                data_through=date(2024, 1, 1),
                points=[],
                model_json=f'{{"series": "{s}|{i}"}}',
            )
            assert tracker.record_series(None, s, i, fit, {})[1] == 1  # a model of its own
        assert tracker.champion_json(store, item) == f'{{"series": "{store}|{item}"}}'
        assert tracker.champion_json(store2, item2) == f'{{"series": "{store2}|{item2}"}}'


@pytest.mark.integration
def test_the_run_records_the_family_and_its_runner_up(tmp_path: Path) -> None:
    (tmp_path / "mlflow").mkdir()
    tracker = Tracker(
        f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "shelfcast",
        artifact_location=str(tmp_path / "mlflow" / "artifacts"),
    )
    fit = SeriesFit(
        method="tuned",
        data_through=date(2024, 1, 1),
        points=[],
        model_json="{}",
        validation_mae=4.0,
        family="combo",
        runner_up="arima",
        runner_up_mae=4.5,
    )
    run_id, _ = tracker.record_series(None, "S1", "I1", fit, {})
    run = tracker.client.get_run(run_id)
    assert run.data.params["family"] == "combo"
    assert run.data.params["runner_up_family"] == "arima"
    assert run.data.metrics["runner_up_validation_mae"] == 4.5


AWKWARD = ["p/ss", "p@ss", "p:ss/@x", "p?ss#1", "s3cr/t@@", "a%2Fb", "pa ss", "/", "ü/@"]


@pytest.mark.parametrize("password", AWKWARD)
def test_credentials_are_redacted_whatever_the_password_holds(password: str) -> None:
    for written in (password, quote(password, safe="")):
        for uri, shown in (
            (
                f"postgresql://optuna:{written}@db.example:5432/optuna",
                "postgresql://***@db.example:5432/optuna",
            ),
            (f"https://mlflow:{written}@mlflow.example/p", "https://***@mlflow.example/p"),
            (
                f"postgresql://db.example/optuna?user=optuna&password={written}&x=1",
                "postgresql://db.example/optuna?user=optuna&password=***&x=1",
            ),
        ):
            assert _safe(uri) == shown
            error = f"connection to {uri} failed: auth for {password!r}; dsn {written}."
            scrubbed = redact(error, uri)
            assert written not in scrubbed and password not in scrubbed, scrubbed
            assert scrubbed.startswith("connection to ")


def test_uris_without_credentials_are_shown_whole() -> None:
    for uri in ("sqlite:////data/a@b/mlflow.db", "http://mlflow:5000", "file:///tmp/x"):
        assert _safe(uri) == uri


# Builds a store and kills itself right after MLflow's migrations create their first
# ``_alembic_tmp_*`` table (a batch ALTER under way), where a lost Ray head had killed one.
_KILLED_MID_MIGRATION = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from retrain.stores.registry import Tracker

def strike(conn, cursor, statement, *args):
    if statement.lstrip().upper().startswith("CREATE TABLE _ALEMBIC_TMP_"):
        os.kill(os.getpid(), signal.SIGKILL)

event.listen(Engine, "after_cursor_execute", strike)
Tracker(sys.argv[1], "x")
"""


def test_a_store_whose_creator_is_killed_mid_migration_opens_whole(tmp_path: Path) -> None:
    """kill -9 while MLflow builds a new SQLite store's tables: the next process opens it
    (it had stayed half-built for good: ``table _alembic_tmp_params already exists``)."""
    import os
    import subprocess
    import sys

    db = tmp_path / "mlflow" / "mlflow.db"
    uri = f"sqlite:///{db}"
    # A temp folder of its own: no template of an earlier store, so the migrations run.
    (tmp_path / "tmp").mkdir()
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_MIGRATION, uri],
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
    )
    assert killed.returncode == -9, "the creator was not killed mid-migration"

    tracker = Tracker(uri, "shelfcast", artifact_location=str(tmp_path / "artifacts"))
    assert tracker.client.get_experiment_by_name("shelfcast") is not None
