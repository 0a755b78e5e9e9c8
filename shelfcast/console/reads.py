"""Where the console's reads run: a small pool of threads of its own (never the service's:
Spark's query thread, the hand-off, the ticker), with a bounded backlog, and each result kept
for a second or two and shared by every request that asks meanwhile."""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from shelfcast.console.access import ConsoleAccessError

__all__ = ["ReadPool"]

T = TypeVar("T")


class ReadPool:
    """``await pool.get(key, fn)``: ``fn()`` on one of ``workers`` threads, its result kept
    ``ttl`` seconds; callers asking for a key already being read wait for that read. At most
    ``backlog`` reads wait or run at once; beyond that a request is answered 503."""

    def __init__(self, workers: int, ttl: float = 1.5, backlog: int = 16, entries: int = 256):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="shelfcast-console-read")
        self.ttl, self.backlog, self.entries = ttl, backlog, entries
        self._done: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._flying: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, fn: Callable[[], T], ttl: float | None = None) -> T:
        """The cached result of ``fn`` under ``key`` (run on the pool when stale)."""
        hit = self._done.get(key)
        if hit is not None and time.monotonic() - hit[0] < (self.ttl if ttl is None else ttl):
            value: T = hit[1]
            return value
        flying = self._flying.get(key)
        if flying is None:
            if len(self._flying) >= self.backlog:
                raise ConsoleAccessError(
                    "The console is busy with other reads; try again in a moment.", 503
                )
            flying = asyncio.get_running_loop().run_in_executor(self._pool, fn)
            self._flying[key] = flying
            flying.add_done_callback(lambda done: self._landed(key, done))
        result: T = await asyncio.shield(flying)
        return result

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the pool, uncached (a write)."""
        result: T = await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        return result

    def _landed(self, key: Hashable, done: "asyncio.Future[Any]") -> None:
        self._flying.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._done.pop(key, None)
        self._done[key] = (time.monotonic(), done.result())
        while len(self._done) > self.entries:
            self._done.popitem(last=False)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
