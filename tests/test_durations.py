"""The order the suite runs its files in (tests/support/durations.py)."""

from dataclasses import dataclass
from pathlib import Path

from tests.support.durations import FileDurations, longest_files_first


@dataclass(frozen=True)
class _Item:
    nodeid: str


def test_files_run_longest_first_each_whole_and_in_order_and_a_new_one_counts_as_longest() -> None:
    items = [
        _Item(n)
        for n in ("a.py::t1", "b.py::t1", "a.py::t2", "new.py::t", "c.py::t[x]", "c.py::t[y]")
    ]
    ordered = longest_files_first(items, {"a.py": 1.0, "b.py": 5.0, "c.py": 3.0})
    assert [i.nodeid for i in ordered] == [
        "b.py::t1",
        "new.py::t",
        "c.py::t[x]",
        "c.py::t[y]",
        "a.py::t1",
        "a.py::t2",
    ]


def test_stored_seconds_add_up_per_file_update_only_the_files_run_and_drop_deleted_ones(
    tmp_path: Path,
) -> None:
    for name in ("a.py", "b.py"):
        (tmp_path / name).touch()
    path = tmp_path / "durations.json"
    path.write_text('{"a.py": 9.0, "b.py": 2.0, "gone.py": 4.0}')
    durations = FileDurations(path)
    for phase in (0.5, 3.0, 0.25):  # setup, call, teardown
        durations.add("a.py::test_x[1]", phase)
    durations.store(tmp_path)
    assert FileDurations(path).load() == {"a.py": 3.8, "b.py": 2.0}


def test_unreadable_durations_order_nothing(tmp_path: Path) -> None:
    (tmp_path / "durations.json").write_text("not json")
    assert FileDurations(tmp_path / "durations.json").load() == {}
    assert FileDurations(tmp_path / "missing.json").load() == {}
