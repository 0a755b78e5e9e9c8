"""The thresholds' audit trail: written ahead of the change and flushed, the writer's OS
account recorded beside the label it claims, and a stale revision refused."""

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from streaming.errors import StreamingError
from streaming.thresholds import ThresholdStore


def test_the_audit_line_is_on_disk_before_the_file_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ThresholdStore(tmp_path)
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        steps.append(f"fsync {Path(name).name}")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        steps.append(f"replace {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.set({"min_new_events": "5"}, who="ops")
    audit = steps.index("fsync thresholds-audit.jsonl")
    written = steps.index("replace thresholds.json")
    assert audit < written
    assert any(s.startswith("fsync .thresholds-") for s in steps[audit:written])  # the temp file
    assert steps[-1] == f"fsync {tmp_path.name}"  # the folder: the rename is on disk


def test_a_crash_between_audit_and_file_loses_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ThresholdStore(tmp_path)

    def crash(*_args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.set({"min_new_events": "5"}, who="ops")
    monkeypatch.undo()
    # The change did not apply, but its record is there: the trail never misses a change.
    assert store.load().min_new_events == 1
    assert [(e["key"], e["new"]) for e in store.history()] == [("min_new_events", 5)]
    assert not list(tmp_path.glob(".thresholds-*"))


def test_by_is_a_claimed_label_beside_the_os_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    monkeypatch.setenv("USER", "ceo")
    monkeypatch.setenv("LOGNAME", "ceo")
    store = ThresholdStore(tmp_path)
    store.set({"min_new_events": "5"})
    store.set({"min_new_days": "2"}, who="ceo")
    first, second = store.history()
    assert (first["by"], first["user"], first["uid"]) == (me, me, os.getuid())
    assert (second["by"], second["user"]) == ("ceo", me)


def test_a_change_from_a_stale_revision_is_refused(tmp_path: Path) -> None:
    operator, other = ThresholdStore(tmp_path), ThresholdStore(tmp_path)
    assert operator.revision == 0
    other.set({"min_new_events": "5"})
    read = operator.revision
    assert read == 1
    other.set({"min_new_events": "9"})  # after the operator read revision 1
    with pytest.raises(StreamingError, match="min_new_events changed after revision 1"):
        operator.set({"min_new_events": "6"}, expect_revision=read)
    assert operator.load().min_new_events == 9
    with pytest.raises(StreamingError, match="changed after revision 1"):
        operator.reset(expect_revision=read)
    # A key nobody changed since goes through; the revision it read is enough for it.
    operator.set({"cooldown_seconds": "60"}, expect_revision=read)
    assert operator.load().cooldown_seconds == 60 and operator.revision == 3
    operator.set({"min_new_events": "6"}, expect_revision=operator.revision)
    assert operator.load().min_new_events == 6
    with pytest.raises(StreamingError, match="revision 99"):
        operator.set({"min_new_events": "7"}, expect_revision=99)
    entries = operator.history()
    assert [e["revision"] for e in entries] == [1, 2, 3, 4]
    document = json.loads(operator.path.read_text())
    assert document["_revision"] == 4 and document["_changed"]["min_new_events"] == 4


def test_a_file_without_a_revision_reads_as_revision_zero(tmp_path: Path) -> None:
    store = ThresholdStore(tmp_path)
    store.path.write_text('{"min_new_events": 3}')
    assert store.load().min_new_events == 3 and store.revision == 0
    store.set({"min_new_events": "4"}, expect_revision=0)
    assert store.revision == 1
