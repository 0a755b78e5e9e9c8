"""The rows of each open wave's series table, until the coordinator's MLflow thread stores
them in parts (pure state; thread-safe).

The coordinator's event loop adds rows; the MLflow thread takes parts out, and gives a part
back when storing it fails, so nothing is lost while MLflow is away, up to a bound: past
it the oldest rows go (each forecast still carries its lineage, and the forecasts table keeps
it). A row of a wave whose run is already closed (a series moved to a later wave while its
task ran) is late: the caller stores it on its own.
"""

import logging
import threading
import time
from typing import Any, Literal

__all__ = ["PART_ROWS", "SeriesTables"]

log = logging.getLogger("shelfcast.coordinator")

# Rows a part (one upload each); a wave's last part holds the rest.
PART_ROWS = 1000
# Rows held across all open waves (~1.3 KB each in memory).
MAX_ROWS = 50_000

Added = Literal["held", "full", "late"]


class SeriesTables:
    """Per open wave run: its rows not stored yet, oldest first, and its next part number."""

    def __init__(self, part_rows: int = PART_ROWS, max_rows: int = MAX_ROWS) -> None:
        self.part_rows = part_rows
        self.max_rows = max_rows
        self.dropped = 0
        self._lock = threading.Lock()
        self._rows: dict[str, list[dict[str, Any]]] = {}  # run id -> rows; oldest run first
        self._parts: dict[str, int] = {}
        self._scheduled: set[str] = set()
        self._retry_at: dict[str, float] = {}

    def open(self, run_id: str) -> None:
        with self._lock:
            self._rows.setdefault(run_id, [])
            self._parts.setdefault(run_id, 0)

    def add(self, run_id: str, row: dict[str, Any]) -> Added:
        """Hold ``row``: ``full`` when its run now has a part to store and no store of it is
        scheduled (the caller schedules one), ``late`` when the run is not open."""
        with self._lock:
            rows = self._rows.get(run_id)
            if rows is None:
                return "late"
            rows.append(row)
            self._bound()
            if (
                len(rows) >= self.part_rows
                and run_id not in self._scheduled
                and time.monotonic() >= self._retry_at.get(run_id, 0.0)
            ):
                self._scheduled.add(run_id)
                return "full"
            return "held"

    def take(self, run_id: str) -> tuple[int, list[dict[str, Any]]] | None:
        """A full part of the run to store, with its number; None (and nothing scheduled)
        when it has none."""
        with self._lock:
            rows = self._rows.get(run_id, [])
            if len(rows) < self.part_rows:
                self._scheduled.discard(run_id)
                return None
            return self._part(run_id, rows[: self.part_rows])

    def close(self, run_id: str) -> tuple[int, list[dict[str, Any]]]:
        """Everything the run still holds, with the next part number; the run is closed
        (its later rows are late) until :meth:`give_back`."""
        with self._lock:
            rows = self._rows.pop(run_id, [])
            self._scheduled.discard(run_id)
            self._retry_at.pop(run_id, None)
            return self._parts.pop(run_id, 0), rows

    def give_back(self, run_id: str, number: int, part: list[dict[str, Any]]) -> None:
        """A part that was not stored, back at the front of its run (reopened if closed)."""
        with self._lock:
            self._rows.setdefault(run_id, [])[:0] = part
            self._parts[run_id] = number

    def failed(self, run_id: str, retry_in: float = 30.0) -> None:
        """Storing the run's parts failed: the next try waits ``retry_in`` s (or the wave's
        end), not the next row."""
        with self._lock:
            self._scheduled.discard(run_id)
            self._retry_at[run_id] = time.monotonic() + retry_in

    def _part(self, run_id: str, part: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        del self._rows[run_id][: len(part)]
        number = self._parts.get(run_id, 0)
        self._parts[run_id] = number + 1
        return number, part

    def _bound(self) -> None:
        """Past the bound, the oldest rows go, from the oldest run first."""
        excess = sum(len(rows) for rows in self._rows.values()) - self.max_rows
        for rows in self._rows.values():
            if excess <= 0:
                return
            gone = min(excess, len(rows))
            del rows[:gone]
            excess -= gone
            if self.dropped == 0 or (self.dropped + gone) // 10_000 > self.dropped // 10_000:
                log.warning(
                    "MLflow has not taken the series tables for a while: %d rows dropped "
                    "(every forecast still carries its lineage)",
                    self.dropped + gone,
                )
            self.dropped += gone
