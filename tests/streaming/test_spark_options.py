"""The Spark driver's JVM options: Derby's home always; the class archive of this environment
when it exists, recording one only when asked."""

from pathlib import Path

import pytest

from shelfcast.class_archive import remove_other_archives
from streaming.config import SparkConfig
from streaming.java import java_runtime
from streaming.spark import _driver_options, class_archive_path


def test_the_driver_maps_the_class_archive_only_when_it_exists(tmp_path: Path) -> None:
    archive = tmp_path / "spark.jsa"
    config = SparkConfig(derby_home=tmp_path / "derby", class_archive=archive)
    assert _driver_options(config) == [f"-Dderby.system.home={tmp_path / 'derby'}"]
    archive.write_bytes(b"x")
    assert _driver_options(config)[1:] == [f"-XX:SharedArchiveFile={archive}"]
    recording = _driver_options(config, record_to=tmp_path / "new.jsa")
    assert recording[1:] == [f"-XX:ArchiveClassesAtExit={tmp_path / 'new.jsa'}"]


def test_the_archive_lives_in_the_environment_named_by_its_pyspark_and_java(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import pyspark

    java = tmp_path / "jdk"
    (java / "bin").mkdir(parents=True)
    (java / "bin" / "java").touch()
    (java / "release").write_text('IMPLEMENTOR="X"\nJAVA_RUNTIME_VERSION="17.0.15+6-Debian 1"\n')
    monkeypatch.setenv("JAVA_HOME", str(java))
    path = class_archive_path()
    assert path.is_relative_to(sys.prefix)
    assert path.name == f"spark-{pyspark.__version__}-java-17.0.15+6-Debian_1.jsa"
    (java / "release").unlink()  # no release file: no version to name
    assert java_runtime() == "unknown"
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    assert java_runtime() == "unknown"


def test_recording_the_archive_removes_the_ones_of_other_versions(tmp_path: Path) -> None:
    for name in ["spark-4.1.0-java-17.0.9.jsa", "spark-4.2.0-java-17.0.15.jsa", "notes.txt"]:
        (tmp_path / name).write_text("x")
    removed = remove_other_archives(tmp_path / "spark-4.2.0-java-17.0.15.jsa")
    assert [p.name for p in removed] == ["spark-4.1.0-java-17.0.9.jsa"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt",
        "spark-4.2.0-java-17.0.15.jsa",
    ]
