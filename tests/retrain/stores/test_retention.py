"""Pruning old model versions on a real MLflow SQLite store."""

from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from retrain.kernel.fallback import SeriesFit
from retrain.stores.registry import CHAMPION, Tracker, model_name
from retrain.stores.retention import prune_models, stale_versions
from shelfcast.cli import main

pytestmark = pytest.mark.integration

FIT = SeriesFit(method="tuned", data_through=date(2024, 1, 1), points=[], model_json="{}")


def test_stale_versions_are_beyond_the_newest_and_never_the_champion() -> None:
    versions = [SimpleNamespace(version=str(n)) for n in (3, 1, 5, 2, 4)]
    assert [v.version for v in stale_versions(versions, 2, "1")] == ["3", "2"]
    assert stale_versions(versions, 5, None) == []


def tracker(root: Path) -> Tracker:
    (root / "mlflow").mkdir(parents=True)
    return Tracker(
        f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
        "shelfcast",
        artifact_location=str(root / "mlflow" / "artifacts"),
    )


def model_files(root: Path) -> int:
    return len(list((root / "mlflow" / "artifacts").glob("*/artifacts/model/model.json")))


def test_pruning_keeps_the_newest_versions_and_the_champion(tmp_path: Path) -> None:
    tracked = tracker(tmp_path)
    for _ in range(5):
        tracked.record_series(None, "S1", "I1", FIT, {})
    tracked.record_series(None, "S1", "I2", FIT, {})
    name = model_name("S1", "I1")
    tracked.client.set_registered_model_alias(name, CHAMPION, "1")  # a rollback to v1

    dry = prune_models(tracked, keep=2, dry_run=True)
    assert (dry.models, dry.versions) == (1, 2)
    assert model_files(tmp_path) == 6

    seen: list[str] = []
    pruned = prune_models(tracked, keep=2, progress=seen.append)

    assert (pruned.models, pruned.versions) == (1, 2)
    assert sorted(seen) == [name, model_name("S1", "I2")]
    left = tracked.client.search_model_versions(f"name='{name}'")
    assert sorted(int(v.version) for v in left) == [1, 4, 5]
    assert model_files(tmp_path) == 4
    assert tracked.champion_json("S1", "I1") == "{}"
    assert prune_models(tracked, keep=2).versions == 0


def test_the_command_prunes_the_data_dirs_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracked = tracker(tmp_path)
    for _ in range(3):
        tracked.record_series(None, "S1", "I1", FIT, {})

    assert main(["prune-models", "--data-dir", str(tmp_path), "--keep", "1"]) == 0
    assert "deleted 2 model versions of 1 series" in capsys.readouterr().out
    assert model_files(tmp_path) == 1
    assert main(["prune-models", "--data-dir", str(tmp_path / "elsewhere")]) == 2
    assert "No MLflow store" in capsys.readouterr().err
