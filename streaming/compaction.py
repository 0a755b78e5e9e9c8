"""Compaction (and vacuum) on a thread of its own: a writer asks for it and goes on.

Compacting the tables partitioned by store rewrites every store's small files; at 100,000
series (2,000 stores) one hand-off spent 65 s in it while the wave waited. Only append-only
tables are compacted here: an append and a compaction commit side by side (Delta retries
the later one), but a merge that rewrote a file the compaction removed would fail.
"""

import logging
import threading
from collections.abc import Callable, Sequence

__all__ = ["Compactor"]

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

    def __init__(self, work: Work) -> None:
        self._work = work
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
