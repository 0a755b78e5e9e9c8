"""A daily plans file and a stores file become ``plan`` v1 and ``store`` v1 messages (pure).

The plans file has one row per store, item and day with 0/1 flags (``date,store,item,promo,
open,school_holiday``): what the chain planned for that day. Runs of consecutive days become
plan events, as a planner publishes them:

- a run of ``promo`` days: a ``promotion`` of that store and item;
- a run of days planned shut on a weekday the store normally opens: a ``closure`` of every
  item of the store (``*``); days it never opens anyway (Sundays) do not break the run;
- a run of ``school_holiday`` days: a ``school_holiday`` of every item of the store.

A store's regular opening days are the ISO weekdays it is planned open on most of the time
(from the ``open`` flags: plans, not sales). Plan ids are built from the kind, store, item and
first day, so a second replay sends the same plans again, and the ingest keeps each once.
"""

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from contracts import EVERY_ITEM
from shelfcast.errors import ShelfcastError

__all__ = [
    "plan_events",
    "read_plans_csv",
    "read_stores_csv",
    "regular_weekdays",
    "runs",
    "store_events",
]

PLAN_COLUMNS = ("date", "store", "item", "promo", "open", "school_holiday")
STORE_COLUMNS = ("store", "country", "subdivision", "store_type", "assortment", "promo2")
EVERY_WEEKDAY = (1, 2, 3, 4, 5, 6, 7)


def _read(path: Path, columns: tuple[str, ...], **options: Any) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"store": str, "item": str}, **options)
    except (OSError, ValueError) as exc:
        raise ShelfcastError(
            f"Cannot read {path}: {exc}. Expected columns {','.join(columns)}."
        ) from exc
    missing = set(columns) - set(frame.columns)
    if missing:
        raise ShelfcastError(
            f"{path} lacks columns {sorted(missing)}; expected {','.join(columns)}."
        )
    return frame


def read_plans_csv(path: Path) -> pd.DataFrame:
    """The rows of a daily plans CSV (plain or .gz): flags as booleans, sorted by day."""
    frame = _read(path, PLAN_COLUMNS, parse_dates=["date"])
    frame["day"] = frame["date"].dt.date
    for flag in ("promo", "open", "school_holiday"):
        frame[flag] = frame[flag].fillna(0).astype(int) != 0
    return frame.sort_values(["store", "item", "day"], kind="stable").reset_index(drop=True)


def read_stores_csv(path: Path) -> pd.DataFrame:
    """The rows of a stores CSV: one store per row."""
    frame = _read(path, STORE_COLUMNS)
    return frame.sort_values("store", kind="stable").reset_index(drop=True)


def regular_weekdays(plans: pd.DataFrame) -> dict[str, tuple[int, ...]]:
    """Each store's ISO weekdays it is planned open on more than half of the time."""
    days = pd.DataFrame(
        {
            "store": plans["store"],
            "weekday": plans["date"].dt.isocalendar().day.astype(int),
            "open": plans["open"],
        }
    )
    share = days.groupby(["store", "weekday"])["open"].mean()
    out: dict[str, list[int]] = {}
    for (store, weekday), opened in share.items():
        if opened > 0.5:
            out.setdefault(str(store), []).append(int(weekday))
    stores = plans["store"].unique()
    return {str(s): tuple(sorted(out.get(str(s), []))) for s in stores}


def runs(
    days: Iterable[date], marked: Iterable[bool], neutral: Iterable[bool] | None = None
) -> list[tuple[date, date]]:
    """The runs ``(first, last)`` of consecutive ``marked`` days; a ``neutral`` day inside a
    run does not break it (nor counts as its first or last day); a missing day does."""
    out: list[tuple[date, date]] = []
    first: date | None = None
    last: date | None = None
    previous: date | None = None
    flags = neutral if neutral is not None else iter(lambda: False, True)
    for day, mark, skip in zip(days, marked, flags, strict=False):
        gap = previous is not None and day != previous + timedelta(days=1)
        if first is not None and last is not None and (gap or not (mark or skip)):
            out.append((first, last))
            first = last = None
        if mark:
            first = first or day
            last = day
        previous = day
    if first is not None and last is not None:
        out.append((first, last))
    return out


def _plan(
    kind: str, store: str, item: str, span: tuple[date, date], ahead: timedelta
) -> dict[str, Any]:
    first, last = span
    published = datetime(first.year, first.month, first.day, tzinfo=UTC) - ahead
    tag = "all-items" if item == EVERY_ITEM else item
    return {
        "plan_id": f"{kind}-{store}-{tag}-{first:%Y%m%d}",
        "revision": 1,
        "store_id": store,
        "item_id": item,
        "start_date": first.isoformat(),
        "end_date": last.isoformat(),
        "kind": kind,
        "published_at": published.isoformat(),
    }


def plan_events(
    plans: pd.DataFrame, open_weekdays: dict[str, tuple[int, ...]], ahead_days: int
) -> list[dict[str, Any]]:
    """Every plan of the file as a ``plan`` v1 message, by first day (published
    ``ahead_days`` before it)."""
    ahead = timedelta(days=ahead_days)
    out: list[dict[str, Any]] = []
    for (store, item), rows in plans.groupby(["store", "item"], sort=True):
        days = list(rows["day"])
        for span in runs(days, rows["promo"]):
            out.append(_plan("promotion", str(store), str(item), span, ahead))
    # Closures and school holidays are the store's, whichever item's rows say so.
    by_store = plans.groupby(["store", "day"], sort=True).agg(
        open=("open", "max"), school_holiday=("school_holiday", "max")
    )
    for store, rows in by_store.groupby(level="store", sort=True):
        days = [d for _, d in rows.index]
        regular = set(open_weekdays.get(str(store), EVERY_WEEKDAY))
        usual = [d.isoweekday() in regular for d in days]
        shut = [u and not o for u, o in zip(usual, rows["open"], strict=True)]
        never = [not u and not o for u, o in zip(usual, rows["open"], strict=True)]
        for span in runs(days, shut, never):
            out.append(_plan("closure", str(store), EVERY_ITEM, span, ahead))
        for span in runs(days, rows["school_holiday"]):
            out.append(_plan("school_holiday", str(store), EVERY_ITEM, span, ahead))
    out.sort(key=lambda p: (p["start_date"], p["store_id"], p["kind"], p["item_id"]))
    return out


def store_events(
    stores: pd.DataFrame, open_weekdays: dict[str, tuple[int, ...]], published: datetime
) -> list[dict[str, Any]]:
    """Every store of the file as a ``store`` v1 message (revision 1). Its opening days come
    from the plans (all seven when it has none); ``promo2`` is kept as an attribute."""
    out = []
    for row in stores.itertuples(index=False):
        subdivision = row.subdivision if isinstance(row.subdivision, str) else None
        attributes: dict[str, Any] = {}
        if not pd.isna(row.promo2):
            attributes["promo2"] = bool(int(row.promo2))
        out.append(
            {
                "store_id": str(row.store),
                "revision": 1,
                "country": str(row.country).upper(),
                "subdivision": subdivision or None,
                "open_weekdays": list(open_weekdays.get(str(row.store), EVERY_WEEKDAY)),
                "store_type": None if pd.isna(row.store_type) else str(row.store_type),
                "assortment": None if pd.isna(row.assortment) else str(row.assortment),
                "attributes": attributes,
                "published_at": published.isoformat(),
            }
        )
    return out


def interleave(
    sales_days: Iterable[tuple[date, Iterable[dict[str, Any]]]],
    plans: list[dict[str, Any]],
    ahead_days: int,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``("plan", message)`` and ``("sale", event)`` in the order a replay sends them: each
    plan just before the sales of the day ``ahead_days`` before its first day (the first
    day's sales when that is earlier), the plans still ahead of the last day at the end.
    Plans that ended before the first day of sales are not sent."""
    ahead = timedelta(days=ahead_days)
    queue = sorted(plans, key=lambda p: p["start_date"])
    at = 0
    first_day: date | None = None
    last_day: date | None = None
    for day, events in sales_days:
        first_day = first_day or day
        last_day = day
        while at < len(queue) and date.fromisoformat(queue[at]["start_date"]) <= day + ahead:
            if date.fromisoformat(queue[at]["end_date"]) >= first_day:
                yield "plan", queue[at]
            at += 1
        for event in events:
            yield "sale", event
    if last_day is None:
        return
    for plan in queue[at:]:
        if date.fromisoformat(plan["start_date"]) <= last_day + ahead:
            yield "plan", plan
