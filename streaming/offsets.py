"""Pure offset arithmetic for the Kafka source: offsets are ``{"<partition>": next_offset}``."""

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "Offsets",
    "TopicOffsets",
    "advance",
    "as_offsets",
    "data_loss",
    "limit_range",
    "limit_topics",
    "nested",
    "resume_after_loss",
    "shaped",
]

Offsets = dict[str, int]
# Several topics: {"<topic>": {"<partition>": next_offset}}. One topic keeps the flat shape
# (the shape of every checkpoint written before the source read several topics).
TopicOffsets = dict[str, Offsets]


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


def data_loss(
    start: Mapping[str, int], ends: Mapping[int, int], floors: Mapping[int, int]
) -> list[str]:
    """What no longer adds up between where we are and what the broker has, in words.

    An end below our position means the offsets went backwards (the topic was deleted and
    recreated, or the broker lost data); a log start above it means retention deleted
    records we had not read yet. A partition that disappeared counts as gone backwards.
    """
    problems = []
    for key, position in sorted(start.items(), key=lambda kv: int(kv[0])):
        partition = int(key)
        if partition not in ends:
            problems.append(f"partition {partition} is gone (we were at offset {position})")
        elif ends[partition] < position:
            problems.append(
                f"partition {partition} ends at {ends[partition]}, before offset {position} "
                "that was already read (topic recreated or broker data lost?)"
            )
        elif floors.get(partition, 0) > position:
            problems.append(
                f"partition {partition} starts at {floors[partition]}: offsets {position}-"
                f"{floors[partition] - 1} were deleted before they were read (retention)"
            )
    return problems


def resume_after_loss(
    start: Mapping[str, int], ends: Mapping[int, int], floors: Mapping[int, int]
) -> Offsets:
    """Where to go on after a loss: each affected partition from its earliest offset."""
    result: Offsets = {}
    for key, position in start.items():
        partition = int(key)
        if partition not in ends:
            continue
        lost = ends[partition] < position or floors.get(partition, 0) > position
        result[key] = floors.get(partition, 0) if lost else position
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


def nested(offsets: Mapping[str, Any], topics: Sequence[str]) -> TopicOffsets:
    """Offsets by topic, from either shape: a flat map is the first topic's (an older
    checkpoint, written when the source read the sales topic alone)."""
    if all(isinstance(v, int) for v in offsets.values()):
        return {topics[0]: {k: int(v) for k, v in offsets.items()}} if offsets else {}
    return {t: {k: int(v) for k, v in parts.items()} for t, parts in offsets.items()}


def shaped(offsets: TopicOffsets, topics: Sequence[str]) -> dict[str, Any]:
    """The shape Spark stores: flat for one topic, by topic for several."""
    if len(topics) == 1:
        return dict(offsets.get(topics[0], {}))
    return {t: dict(offsets.get(t, {})) for t in topics}


def limit_topics(start: TopicOffsets, end: TopicOffsets, max_rows: int) -> TopicOffsets:
    """:func:`limit_range` over every partition of every topic at once."""
    sep = "\x00"
    flat_start = {f"{t}{sep}{p}": o for t, parts in start.items() for p, o in parts.items()}
    flat_end = {f"{t}{sep}{p}": o for t, parts in end.items() for p, o in parts.items()}
    out: TopicOffsets = {t: {} for t in end}
    for key, offset in limit_range(flat_start, flat_end, max_rows).items():
        topic, _, partition = key.partition(sep)
        out[topic][partition] = offset
    return out
