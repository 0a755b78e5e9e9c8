"""Waiting on a condition, never for a fixed time."""

import time
from collections.abc import Callable

__all__ = ["wait_for"]


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
