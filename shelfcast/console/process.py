"""The console in a process of its own, started and stopped by the service.

In the service's process the console's reads took the interpreter from the micro-batches and
hand-offs, and those took it from the console: at 100,000 series a series page's p95 was
662 ms during a wave. The child gets the settings on its stdin (secrets never in argv) and
ends when that pipe closes, so it dies with the service, even one killed with ``-9``.
"""

import json
import logging
import os
import subprocess
import sys
import threading
from typing import IO, Any

from shelfcast.errors import ShelfcastError
from shelfcast.settings import Settings, settings_to_json

__all__ = ["ConsoleProcess"]

log = logging.getLogger("shelfcast.console")

# Time for the child to import the console, bind its port and answer (imports take ~3 s on
# an idle machine, far more beside a busy Spark and Ray).
START_SECONDS = 120.0
STOP_SECONDS = 5.0


class ConsoleProcess:
    """``start`` runs ``python -m shelfcast.console`` and returns its address once it serves
    (raising ``ShelfcastError`` with the child's reason when it cannot); ``stop`` ends it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> str:
        self.launch()
        return self.ready()

    def launch(self) -> None:
        """Start the child; it imports and binds while the caller goes on (``ready``)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "shelfcast.console"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._proc = proc
        assert proc.stdin is not None
        try:
            proc.stdin.write(settings_to_json(self.settings) + "\n")
            proc.stdin.flush()
        except OSError:
            pass  # it died at once: ``ready`` says so

    def ready(self, timeout: float = START_SECONDS) -> str:
        """The console's address once it serves; ``ShelfcastError`` with the child's reason
        when it cannot (the child is stopped)."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise ShelfcastError("The console was not launched.")
        answer = _first_line(proc.stdout, timeout)
        try:
            said: dict[str, Any] = json.loads(answer) if answer else {}
        except ValueError:
            said = {}
        if "url" not in said:
            self.stop()
            reason = said.get("error") or "it did not start; see the log above"
            raise ShelfcastError(f"The console did not start: {reason}")
        return str(said["url"])

    def stop(self) -> None:
        """Close its stdin (it stops serving), then terminate it if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _first_line(stream: IO[str], timeout: float) -> str:
    """The stream's first line, or "" when none came within ``timeout``."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0] if got else ""
