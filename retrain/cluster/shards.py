"""Which coordinator owns a series, as plain data.

The retrain queue can be split over N named coordinator actors by series key. A series always
maps to the same shard, so each shard keeps every per-series guarantee of one queue
(coalescing, retry, poison) on its own; priority holds within a shard.
"""

import zlib
from collections.abc import Iterable, Sequence
from typing import TypeVar

from contracts.series import series_key

__all__ = ["COORDINATOR", "coordinator_name", "shard_of", "split"]

COORDINATOR = "shelfcast-coordinator"

T = TypeVar("T", bound=Sequence[object])


def coordinator_name(shard: int) -> str:
    """The actor name of ``shard`` (shard 0 keeps the name one coordinator always had)."""
    return COORDINATOR if shard == 0 else f"{COORDINATOR}-{shard}"


def shard_of(key: str, shards: int) -> int:
    """The shard of series ``"store|item"``: stable across processes and Python runs."""
    if shards <= 1:
        return 0
    return zlib.crc32(key.encode()) % shards


def split(requests: Iterable[T], shards: int) -> list[list[T]]:
    """``(store, item, ...)`` tuples grouped by shard, order kept within each."""
    out: list[list[T]] = [[] for _ in range(max(1, shards))]
    for request in requests:
        out[shard_of(series_key(str(request[0]), str(request[1])), shards)].append(request)
    return out
