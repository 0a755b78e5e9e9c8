"""``date,store,item,sales`` daily rows become individual POS events (pure)."""

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from shelfcast.errors import ShelfcastError

__all__ = ["read_daily_csv", "replay_days", "replay_events", "replay_messages", "split_units"]

_OPEN = timedelta(hours=8)
_OPEN_HOURS = timedelta(hours=13)


def read_daily_csv(
    path: Path, start: date | None = None, until: date | None = None
) -> pd.DataFrame:
    """The rows of a daily sales CSV (plain or .gz), ``start``..``until`` inclusive, by date."""
    try:
        frame = pd.read_csv(path, dtype={"store": str, "item": str}, parse_dates=["date"])
    except (OSError, ValueError) as exc:
        raise ShelfcastError(
            f"Cannot read {path}: {exc}. Expected columns date,store,item,sales."
        ) from exc
    missing = {"date", "store", "item", "sales"} - set(frame.columns)
    if missing:
        raise ShelfcastError(
            f"{path} lacks columns {sorted(missing)}; expected date,store,item,sales."
        )
    days = frame["date"].dt.date
    if start is not None:
        frame = frame[days >= start]
    if until is not None:
        frame = frame[frame["date"].dt.date <= until]
    return frame.sort_values(["date", "store", "item"], kind="stable").reset_index(drop=True)


def split_units(units: float, max_events: int) -> list[float]:
    """At most ``max_events`` positive quantities that sum exactly to ``units``."""
    if units <= 0 or max_events < 1:
        return []
    if float(units).is_integer():
        whole = int(units)
        count = min(max_events, whole)
        base, extra = divmod(whole, count)
        return [float(base + (1 if k < extra else 0)) for k in range(count)]
    count = max_events
    share = round(units / count, 6)
    return [share] * (count - 1) + [round(units - share * (count - 1), 6)]


def replay_events(frame: pd.DataFrame, events_per_day: int) -> Iterator[dict[str, Any]]:
    """POS events spread over each day's opening hours, with deterministic ids."""
    for day, store, item, sales in frame[["date", "store", "item", "sales"]].itertuples(
        index=False, name=None
    ):
        quantities = split_units(float(sales), events_per_day)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        step = _OPEN_HOURS / max(len(quantities), 1)
        for k, quantity in enumerate(quantities):
            yield {
                "event_id": f"replay-{day:%Y%m%d}-{store}-{item}-{k}",
                "store_id": str(store),
                "item_id": str(item),
                "sold_at": (midnight + _OPEN + step * (k + 0.5)).isoformat(timespec="seconds"),
                "quantity": quantity,
            }


def replay_days(
    frame: pd.DataFrame, events_per_day: int
) -> Iterator[tuple[date, Iterator[dict[str, Any]]]]:
    """:func:`replay_events` day by day: ``(day, that day's events)``."""
    for day, rows in frame.groupby(frame["date"].dt.date, sort=True):
        yield day, replay_events(rows, events_per_day)


Message = tuple[str, str, dict[str, Any]]  # (topic, key, value)


def replay_messages(
    frame: pd.DataFrame,
    events_per_day: int,
    topics: tuple[str, str, str],
    plans: Sequence[dict[str, Any]] = (),
    stores: Sequence[dict[str, Any]] = (),
    plans_ahead_days: int = 60,
) -> Iterator[Message]:
    """What a replay sends, in order: the store records first (master data), then each
    day's sales, each plan ``plans_ahead_days`` before its first day (see
    :func:`shelfcast.pos.plans.interleave`). ``topics``: sales, plans, stores."""
    from contracts import series_key
    from shelfcast.pos.plans import interleave

    sales_topic, plans_topic, stores_topic = topics
    for store in stores:
        yield stores_topic, store["store_id"], store
    for kind, message in interleave(
        replay_days(frame, events_per_day), list(plans), plans_ahead_days
    ):
        if kind == "plan":
            yield plans_topic, message["plan_id"], message
        else:
            yield sales_topic, series_key(message["store_id"], message["item_id"]), message
