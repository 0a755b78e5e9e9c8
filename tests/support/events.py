"""Valid input messages, as a POS and its planners send them."""

from datetime import date, timedelta
from typing import Any

__all__ = ["histories", "history", "plan", "sale", "store_record"]


def sale(
    event_id: str,
    store: str = "S1",
    item: str = "I1",
    day: str = "2024-03-04",
    quantity: float = 1.0,
    **extra: Any,
) -> dict[str, Any]:
    """A valid pos_sale v1 event."""
    return {
        "event_id": event_id,
        "store_id": store,
        "item_id": item,
        "sold_at": f"{day}T10:00:00+00:00",
        "quantity": quantity,
        **extra,
    }


def plan(
    plan_id: str,
    revision: int = 1,
    store: str = "S1",
    item: str = "*",
    start: str = "2024-03-20",
    days: int = 7,
    kind: str = "promotion",
    **extra: Any,
) -> dict[str, Any]:
    """A valid plan v1 message (``days`` from ``start``)."""
    first = date.fromisoformat(start)
    return {
        "plan_id": plan_id,
        "revision": revision,
        "store_id": store,
        "item_id": item,
        "start_date": first.isoformat(),
        "end_date": (first + timedelta(days=days - 1)).isoformat(),
        "kind": kind,
        "published_at": "2024-03-04T08:00:00+00:00",
        **extra,
    }


def store_record(store: str = "S1", revision: int = 1, **extra: Any) -> dict[str, Any]:
    """A valid store v1 message."""
    return {
        "store_id": store,
        "revision": revision,
        "country": "DE",
        "subdivision": "NW",
        "open_weekdays": [1, 2, 3, 4, 5, 6],
        "published_at": "2024-03-01T08:00:00+00:00",
        **extra,
    }


def history(store: str, item: str, days: int = 30, tag: str = "h") -> list[dict[str, Any]]:
    """One sale a day for ``days`` days from 2024-01-01, 3-15 units each; ids carry ``tag``."""
    start = date(2024, 1, 1)
    return [
        sale(
            f"{tag}-{store}-{item}-{k}",
            store,
            item,
            (start + timedelta(days=k)).isoformat(),
            quantity=float(3 + (k * 7919) % 13),
        )
        for k in range(days)
    ]


def histories(series: int, days: int, tag: str, store: str = "F") -> list[dict[str, Any]]:
    """:func:`history` of items ``I0`` .. of one store, series after series."""
    return [e for n in range(series) for e in history(store, f"I{n}", days=days, tag=tag)]
