"""Waiting on a condition, never for a fixed time."""

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["wait_for", "wait_for_ray_node"]


def wait_for(
    check: Callable[[], object],
    timeout: float = 60.0,
    what: str = "the condition",
    interval: float = 0.25,
) -> None:
    """Return as soon as ``check()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_for_ray_node(proc: "subprocess.Popen[bytes]", log: Path, timeout: float = 120.0) -> None:
    """Return once the ``ray start`` running as ``proc`` logged that its node is up; fail with
    its log if it exits first. Its port listens seconds before that, and a node that misses
    Ray's 30 s to register on a busy machine exits then."""
    from shelfcast.embedded import RAY_STARTED, logged

    up = logged(proc, log, 0, RAY_STARTED, time.monotonic() + timeout)
    assert up, "the Ray node did not start: " + log.read_text(errors="replace")[-3000:]
