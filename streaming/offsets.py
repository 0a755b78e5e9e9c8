"""Pure offset arithmetic for the Kafka source: offsets are ``{"<partition>": next_offset}``."""

from collections.abc import Mapping

__all__ = ["Offsets", "advance", "as_offsets", "limit_range"]

Offsets = dict[str, int]


def as_offsets(ends: Mapping[int, int]) -> Offsets:
    """Spark wants JSON-friendly keys."""
    return {str(partition): offset for partition, offset in sorted(ends.items())}


def advance(
    start: Mapping[str, int], ends: Mapping[int, int], floors: Mapping[int, int]
) -> Offsets:
    """The end of the next batch: every partition's end, never behind where we already are.

    A partition that is new since ``start`` starts from its ``floors`` (earliest) offset.
    """
    result: Offsets = dict(start)
    for partition, end in ends.items():
        key = str(partition)
        begin = start.get(key, floors.get(partition, 0))
        result[key] = max(begin, end)
    return result


def limit_range(start: Mapping[str, int], end: Mapping[str, int], max_rows: int) -> Offsets:
    """Shrink ``end`` so that at most ``max_rows`` records are read, shared fairly.

    Water-filling: each partition gets an equal share; what a small partition leaves unused
    goes to the others. Deterministic, so a replayed plan is the same plan.
    """
    pending = {key: max(0, end[key] - start.get(key, 0)) for key in end}
    if sum(pending.values()) <= max_rows:
        return dict(end)
    granted = dict.fromkeys(pending, 0)
    budget = max_rows
    open_keys = sorted(key for key, n in pending.items() if n > 0)
    while budget > 0 and open_keys:
        share = max(1, budget // len(open_keys))
        for key in list(open_keys):
            take = min(share, pending[key] - granted[key], budget)
            granted[key] += take
            budget -= take
            if granted[key] == pending[key]:
                open_keys.remove(key)
            if budget == 0:
                break
    return {key: start.get(key, 0) + granted[key] for key in end}
