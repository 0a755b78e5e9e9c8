"""Compaction (and vacuum) off the writers' path: a writer asks for it and goes on.

Compacting the tables partitioned by store rewrites every store's small files; at 100,000
series (2,000 stores) one hand-off spent 65 s in it while the wave waited. Only append-only
tables are compacted here: an append and a compaction commit side by side (Delta retries
the later one), but a merge that rewrote a file the compaction removed would fail.
``Compactor`` runs the requests one at a time on a thread; ``MaintenanceProcess`` runs each
in a process of its own at a lower CPU priority (``streaming.maintain``).
"""

import contextlib
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from streaming.errors import TableError

__all__ = ["Compactor", "MaintenanceProcess"]

log = logging.getLogger("shelfcast.tables")


# work(tables, vacuum retention hours or None)
Work = Callable[[Sequence[str], float | None], None]


class Compactor:
    """Runs ``work(names, vacuum_hours)`` for the tables asked for, one request at a time.

    Tables asked for while one runs are done once after it, together; a vacuum asked for
    by any of those requests is done too. The thread starts at the first request and is a
    daemon: a compaction cut short by the process' end leaves files no commit names, which
    vacuum removes.
    """

    def __init__(self, work: Work, stop: Callable[[], None] | None = None) -> None:
        self._work = work
        self._stop = stop  # ends a ``work`` in flight (at close)
        self._wanted: set[str] = set()
        self._vacuum: float | None = None
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def request(self, names: Sequence[str], vacuum_hours: float | None = None) -> None:
        """Compact ``names`` soon, off the caller's thread (and vacuum them: ``vacuum_hours``)."""
        with self._cond:
            if self._closed or not names:
                return
            self._wanted.update(names)
            if vacuum_hours is not None:
                self._vacuum = vacuum_hours
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="shelfcast-compaction", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait until nothing is asked for or running; False when ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._wanted and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Take no more requests; wait up to ``timeout`` for a compaction in flight."""
        with self._cond:
            self._closed = True
            self._wanted.clear()
            self._cond.notify_all()
            thread = self._thread
        if self._stop is not None:
            self._stop()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._wanted) or self._closed)
                if self._closed:
                    return
                names, vacuum = sorted(self._wanted), self._vacuum
                self._wanted.clear()
                self._vacuum = None
                self._busy = True
            try:
                self._work(names, vacuum)
            except Exception:  # the thread must outlive one failure; the next request retries
                log.exception("background maintenance of %s failed", ", ".join(names))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class MaintenanceProcess:
    """A :data:`Work` that maintains the tables under ``root`` in ``python -m
    streaming.maintain``, which runs after the service in CPU priority; ``stop`` ends the one
    in flight. The storage options (credentials) go on its stdin."""

    def __init__(self, root: str, storage_options: dict[str, str] | None = None) -> None:
        self.root = root
        self._storage_options = storage_options
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._stopped = False

    def __repr__(self) -> str:  # not the storage options
        return f"MaintenanceProcess({self.root!r})"

    def __call__(self, names: Sequence[str], vacuum_hours: float | None) -> None:
        request = {
            "root": self.root,
            "names": list(names),
            "vacuum_hours": vacuum_hours,
            "storage_options": self._storage_options,
        }
        with self._lock:
            if self._stopped:
                return
            proc = self._proc = subprocess.Popen(
                [sys.executable, "-m", "streaming.maintain"], stdin=subprocess.PIPE, text=True
            )
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            code = proc.wait()  # the pipe stays open meanwhile: closed, the child ends
        except (OSError, ValueError):  # it ended, or stop closed its pipe, before it read
            code = proc.wait()
        finally:
            with self._lock:
                self._proc = None
            with contextlib.suppress(OSError, ValueError):  # a pipe broken or closed by stop
                proc.stdin.close()
        if code != 0 and not self._stopped:
            raise TableError(
                f"Maintaining {', '.join(names)} under {self.root} exited with {code} (its "
                "error is in the log above); the next compaction tries again."
            )

    @property
    def pid(self) -> int | None:
        """The maintenance process in flight, if any."""
        proc = self._proc
        return None if proc is None else proc.pid

    def stop(self, timeout: float = 2.0) -> None:
        """End the maintenance in flight (its stdin closed; killed if it lingers) and start
        no more."""
        with self._lock:
            self._stopped = True
            proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
