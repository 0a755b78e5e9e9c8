"""The embedded broker's class archive: recorded once by a node that served a topic, mapped by
every later start (both of its JVMs) when it exists, named by the jars and the Java."""

import sys
from pathlib import Path

import pytest

from shelfcast.class_archive import record_broker_archive, remove_other_archives
from shelfcast.embedded import free_port, start_broker, stop_process
from shelfcast.kafka_broker import KafkaNode, class_archive_path, format_command, server_command
from shelfcast.settings import load_settings
from streaming.java import java_runtime


def test_both_jvms_map_the_archive_only_when_it_exists_and_the_server_records_when_asked(
    tmp_path: Path,
) -> None:
    node = KafkaNode(tmp_path, "127.0.0.1", 9092)
    archive = tmp_path / "kafka.jsa"
    mapped = f"-XX:SharedArchiveFile={archive}"
    assert mapped not in format_command("java", "cp", node, archive)
    assert mapped not in server_command("java", "cp", node, archive=archive)
    archive.write_bytes(b"x")
    assert mapped in format_command("java", "cp", node, archive)
    assert mapped in server_command("java", "cp", node, archive=archive)
    recording = server_command("java", "cp", node, archive=archive, record_to=archive)
    assert f"-XX:ArchiveClassesAtExit={archive}" in recording and mapped not in recording
    assert not [a for a in server_command("java", "cp", node) if "Archive" in a]


def test_the_archive_lives_in_the_environment_named_by_its_jars_and_java(tmp_path: Path) -> None:
    java = sys.executable  # no release file beside it: an unknown runtime
    jars = [tmp_path / "kafka_2.13-4.1.0.jar", tmp_path / "other.jar"]
    for jar in jars:
        jar.write_bytes(b"jar")
    classpath = ":".join(map(str, jars))
    path = class_archive_path(java, classpath)
    assert path.is_relative_to(sys.prefix)
    assert path.name.startswith("kafka-") and path.name.endswith(f"-java-{java_runtime(java)}.jsa")
    assert class_archive_path(java, classpath) == path
    assert class_archive_path(java, str(jars[0])) != path, "other jars"
    jars[1].write_bytes(b"fetched again")  # a jar the archive was not recorded from
    assert class_archive_path(java, classpath) != path


def test_recording_one_kind_removes_only_that_kinds_other_archives(tmp_path: Path) -> None:
    names = ["kafka-aaa-java-17.jsa", "kafka-bbb-java-17.jsa", "spark-4.2.0-java-17.jsa"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_other_archives(tmp_path / "kafka-bbb-java-17.jsa")
    assert [p.name for p in removed] == ["kafka-aaa-java-17.jsa"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names[1:]


@pytest.mark.integration
def test_a_recorded_archive_is_mapped_by_the_next_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "kafka.jsa"
    record_broker_archive(load_settings(data_dir=tmp_path / "recording"), archive)
    assert archive.stat().st_size > 1_000_000, "the classes a node loads, written at its exit"

    monkeypatch.setattr("shelfcast.embedded.class_archive_path", lambda *_: archive)
    settings = load_settings(
        data_dir=tmp_path / "node", bootstrap_servers=f"127.0.0.1:{free_port()}"
    )
    proc = start_broker(settings)
    try:
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert str(archive) in maps, "the broker's JVM mapped the archive"
    finally:
        stop_process(proc.pid)


def test_one_archive_that_fails_to_record_leaves_the_other_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shelfcast import class_archive

    spark, kafka = tmp_path / "spark-x.jsa", tmp_path / "kafka-x.jsa"
    monkeypatch.setattr(class_archive, "class_archive_path", lambda: spark)
    monkeypatch.setattr(class_archive, "broker_archive_path", lambda *_: kafka)
    monkeypatch.setattr(class_archive, "broker_classpath", lambda _: "cp")

    def fails(*_: object) -> None:
        raise RuntimeError("no JVM today")

    monkeypatch.setattr(class_archive, "record_class_archive", fails)
    monkeypatch.setattr(class_archive, "record_broker_archive", lambda _, p: p.write_bytes(b"x"))
    assert class_archive.main() == 1
    out, err = capsys.readouterr()
    assert out.strip() == "spark not recorded, kafka recorded"
    assert "recording the spark class archive failed: RuntimeError('no JVM today')" in err
    spark.write_bytes(b"x")
    assert class_archive.main() == 0
    assert capsys.readouterr().out.strip() == "spark present, kafka present"
