import os
from pathlib import Path

import pytest

from shelfcast.settings import load_settings


def test_a_relative_data_dir_is_made_absolute_where_the_settings_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHELFCAST_DATA_DIR", raising=False)
    assert load_settings().data_dir == tmp_path.resolve() / ".shelfcast"
    assert load_settings(data_dir=Path("data")).data_dir == tmp_path.resolve() / "data"
    monkeypatch.chdir(os.sep)  # a process elsewhere reads the same paths from these settings
    assert load_settings(data_dir=tmp_path / "data").delta_dir == tmp_path.resolve() / "data/delta"
