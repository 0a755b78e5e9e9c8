"""The Spark driver's JVM options: Derby's home always; the class archive of this environment
when it exists, recording one only when asked."""

from pathlib import Path

from streaming.config import SparkConfig
from streaming.spark import _driver_options, class_archive_path


def test_the_driver_maps_the_class_archive_only_when_it_exists(tmp_path: Path) -> None:
    archive = tmp_path / "spark.jsa"
    config = SparkConfig(derby_home=tmp_path / "derby", class_archive=archive)
    assert _driver_options(config) == [f"-Dderby.system.home={tmp_path / 'derby'}"]
    archive.write_bytes(b"x")
    assert _driver_options(config)[1:] == [f"-XX:SharedArchiveFile={archive}"]
    recording = _driver_options(config, record_to=tmp_path / "new.jsa")
    assert recording[1:] == [f"-XX:ArchiveClassesAtExit={tmp_path / 'new.jsa'}"]


def test_the_archive_lives_in_the_environment_named_by_its_pyspark() -> None:
    import sys

    import pyspark

    path = class_archive_path()
    assert path.is_relative_to(sys.prefix)
    assert path.name == f"spark-{pyspark.__version__}.jsa"
