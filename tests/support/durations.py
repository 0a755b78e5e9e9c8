"""The order the suite runs its test files in: longest first, by the seconds each took in the
last run that stored them (``pytest --store-durations``, into ``tests/durations.json``).

``scripts/test`` hands files to its xdist workers in this order, the next one to a worker
once two or fewer tests of its current file are left. Longest first, the short files come
last and fill whichever worker frees first, so the workers end within seconds of each other; in
collection order, one worker once ran the last long file alone for 76 s."""

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = ["DURATIONS", "FileDurations", "file_of", "longest_files_first"]

DURATIONS = Path(__file__).resolve().parents[1] / "durations.json"


class _HasNodeId(Protocol):
    @property
    def nodeid(self) -> str: ...


T = TypeVar("T", bound=_HasNodeId)


def file_of(nodeid: str) -> str:
    """The test file of a node id: ``tests/x/test_y.py`` of ``tests/x/test_y.py::test_z[a]``."""
    return nodeid.partition("::")[0]


def longest_files_first(items: Sequence[T], seconds: dict[str, float]) -> list[T]:
    """``items`` with their files in descending order of ``seconds``, each file's tests kept
    together and in their order. A file not measured yet counts as the longest: one that is
    long must not start last and end the run alone."""
    longest = max(seconds.values(), default=0.0)
    return sorted(items, key=lambda item: -seconds.get(file_of(item.nodeid), longest))


class FileDurations:
    """Seconds per test file (setup, call and teardown of its tests), stored as JSON."""

    def __init__(self, path: Path = DURATIONS) -> None:
        self.path = path
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def load(self) -> dict[str, float]:
        """The stored seconds; none when the file is missing or not ours."""
        try:
            stored = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(stored, dict):
            return {}
        return {str(k): float(v) for k, v in stored.items() if isinstance(v, int | float)}

    def add(self, nodeid: str, duration: float) -> None:
        """Count ``duration`` seconds of one phase of one test."""
        self.seconds[file_of(nodeid)] += duration

    def store(self, root: Path) -> None:
        """Write the stored seconds updated with those counted: a partial run updates its own
        files, and files no longer under ``root`` (the node ids' root) go."""
        merged = {**self.load(), **self.seconds}
        merged = {f: s for f, s in merged.items() if (root / f).is_file()}
        self.path.write_text(
            json.dumps({f: round(s, 1) for f, s in sorted(merged.items())}, indent=1) + "\n"
        )
