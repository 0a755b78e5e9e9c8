"""A new SQLite store: the node's first is built by MLflow's migrations and kept as a
template; later ones are copies that MLflow opens as it opens one it built."""

import os
import tempfile
from pathlib import Path

import pytest

from retrain.stores import sqlite_store
from retrain.stores.registry import Tracker


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp directory of this test's own (``tempfile.gettempdir()``)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The drafts MLflow's migrations build from now on."""
    built: list[Path] = []
    build = sqlite_store._build

    def counted(draft: Path) -> None:
        built.append(draft)
        build(draft)

    monkeypatch.setattr(sqlite_store, "_build", counted)
    return built


def test_the_first_store_is_built_and_the_next_ones_are_copies_mlflow_opens(
    temp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = builds(monkeypatch)
    trackers = [
        Tracker(f"sqlite:///{tmp_path / name / 'mlflow.db'}", "shelfcast") for name in "abc"
    ]
    assert len(built) == 1, "only the first store ran the migrations"
    (template,) = (temp / f"shelfcast-{os.getuid()}").glob("mlflow-*.db")
    assert template.stat().st_size > 0
    for tracker in trackers:  # every store works on its own
        run = tracker.client.create_run(tracker.experiment_id)
        tracker.client.log_metric(run.info.run_id, "mase", 0.5)
        assert tracker.client.get_run(run.info.run_id).data.metrics == {"mase": 0.5}


def test_a_damaged_template_is_built_again_and_replaced(
    temp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Tracker(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}", "shelfcast")
    (template,) = (temp / f"shelfcast-{os.getuid()}").glob("mlflow-*.db")
    template.write_bytes(b"not a database")
    built = builds(monkeypatch)
    tracker = Tracker(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}", "shelfcast")
    assert len(built) == 1 and tracker.experiment_id
    assert template.read_bytes().startswith(b"SQLite format 3")


def test_without_a_private_temp_folder_every_store_is_built(
    temp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (temp / f"shelfcast-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(temp / f"shelfcast-{os.getuid()}", 0o777)  # opened up: shared with anyone
    built = builds(monkeypatch)
    for name in "ab":
        Tracker(f"sqlite:///{tmp_path / name / 'mlflow.db'}", "shelfcast")
    assert len(built) == 2
    assert not list((temp / f"shelfcast-{os.getuid()}").iterdir())
