"""Which store failures are outages: read from real errors of the real libraries."""

import os
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from retrain.errors import InfrastructureError, RetrainError
from retrain.stores.registry import Tracker
from retrain.stores.transient import transient
from shelfcast.embedded import free_port


def test_a_database_that_cannot_be_reached_or_is_locked_is_an_outage(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
        engine.connect()
    assert transient(caught.value)
    assert transient(sqlite3.OperationalError("database is locked"))


def test_a_sqlite_store_with_a_broken_schema_is_not(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE _alembic_tmp_params (key TEXT)"))
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught, engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE _alembic_tmp_params (key TEXT)"))
    assert not transient(caught.value)
    assert not transient(sqlite3.OperationalError("duplicate column name: step"))


def test_a_refusal_of_what_was_sent_is_not() -> None:
    assert not transient(MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE))
    assert not transient(MlflowException("gone", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not transient(FileNotFoundError("vacuumed"))
    assert not transient(KeyError("no such study"))
    assert transient(MlflowException("server error"))  # MLflow's 500: its store failed
    assert transient(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))


def test_mlflow_not_listening_is_an_outage_of_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # The setting wins over MLflow's own variable, which it sets for the whole process (put
    # back after the test by monkeypatch).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    began = time.monotonic()
    with pytest.raises(InfrastructureError) as caught:
        Tracker(f"http://127.0.0.1:{free_port()}", "shelfcast", retries=0)
    assert caught.value.system == "MLflow" and "retried until it answers" in str(caught.value)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert time.monotonic() - began < 10, "one try, not 7 retries over ~4 min"


def test_an_mlflow_refusal_stays_the_series_error(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "shelfcast")
    with pytest.raises(RetrainError) as caught:
        tracker.finish_wave("no-such-run", {"done": 1})
    assert not isinstance(caught.value, InfrastructureError)
