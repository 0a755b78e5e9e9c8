"""The benchmark data sets as series with their plans, and ACCURACY.md's origins and baseline.

Kaggle: 500 simulated store-item series, no closures, no plans. Rossmann: real stores, days
a store was shut absent from the file, and what the chain planned ahead (promotions, planned
closures, school holidays) plus each store's state and type, turned into plan records as the
service stores them (``retrain.kernel.plans``).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from retrain.kernel.plans import Plan, StoreInfo

__all__ = [
    "DATA",
    "HORIZON",
    "PLANS_AHEAD_DAYS",
    "Series",
    "load",
    "naive_reference",
    "origin_days",
    "plan_runs",
    "read_plans",
]

DATA = Path(__file__).resolve().parents[2] / "shared/data"
HORIZON = 28
# Plans are published this many days before the day they plan (replay's default): at an
# origin, a plan is known when it starts no later than that many days after it.
PLANS_AHEAD_DAYS = 60


@dataclass(frozen=True)
class Series:
    """One series: daily values from ``start`` (absent days as zero), its store's total on
    the same days, and what its store planned."""

    dataset: str
    key: str
    store: str
    item: str
    start: date
    values: np.ndarray
    country: str | None
    pool: np.ndarray | None = None
    plans: tuple[Plan, ...] = ()
    store_info: StoreInfo | None = None
    statics: dict[str, str] = field(default_factory=dict)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=len(self.values) - 1)

    def known_plans(self, origin: date) -> tuple[Plan, ...]:
        """The plans published by ``origin`` (nothing measured after it)."""
        horizon = origin + timedelta(days=PLANS_AHEAD_DAYS)
        return tuple(p for p in self.plans if p.start <= horizon)


def _runs(flags: np.ndarray, days: list[date]) -> list[tuple[date, date]]:
    out = []
    index = 0
    while index < len(flags):
        if flags[index]:
            last = index
            while last + 1 < len(flags) and flags[last + 1]:
                last += 1
            out.append((days[index], days[last]))
            index = last + 1
        else:
            index += 1
    return out


def plan_runs(frame: pd.DataFrame) -> tuple[tuple[int, ...], list[Plan]]:
    """One store's daily plan flags (``date, promo, open, school_holiday``) as its regular
    opening weekdays and plan records: runs of promotion days, of school holidays, and of
    days planned shut on a weekday the store normally opens."""
    frame = frame.sort_values("date")
    days = [d.date() for d in frame["date"]]
    weekday = frame["date"].dt.isocalendar().day.to_numpy()
    shares = pd.Series(frame["open"].to_numpy()).groupby(weekday).mean()
    open_days = tuple(int(k) for k, v in shares.items() if v >= 0.5)
    plans = [Plan("promotion", a, b) for a, b in _runs(frame["promo"].to_numpy() > 0, days)]
    school = frame["school_holiday"].to_numpy() > 0
    plans += [Plan("school_holiday", a, b) for a, b in _runs(school, days)]
    shut = (frame["open"].to_numpy() == 0) & np.isin(weekday, open_days)
    plans += [Plan("closure", a, b) for a, b in _runs(shut, days)]
    return open_days, plans


def read_plans(folder: Path) -> tuple[dict[str, list[Plan]], dict[str, StoreInfo]]:
    """The plan records and store records of the Rossmann folder's files, by store."""
    plans = pd.read_csv(folder / "plans.csv.gz", parse_dates=["date"])
    stores = pd.read_csv(folder / "stores.csv", dtype=str)
    found, infos = {}, {}
    for store, frame in plans.groupby("store"):
        open_days, found[str(store)] = plan_runs(frame)
        row = stores[stores["store"] == str(store)].iloc[0]
        infos[str(store)] = StoreInfo(
            str(store),
            row["country"],
            row["subdivision"],
            open_days,
            row["store_type"],
            row["assortment"],
        )
    return found, infos


def load(path: Path, dataset: str, n: int, country: str | None) -> list[Series]:
    """Every ``len // n``-th series of the file (all when ``n`` is 0 or above the count)."""
    frame = pd.read_csv(path, parse_dates=["date"], dtype={"store": str, "item": str})
    frame["key"] = frame["store"] + "|" + frame["item"]
    keys = sorted(
        frame["key"].unique(), key=lambda k: [int(p) if p.isdigit() else p for p in k.split("|")]
    )
    if n and n < len(keys):
        keys = keys[:: max(1, len(keys) // n)][:n]
    last = frame["date"].max()
    stores = frame.groupby(["store", "date"])["sales"].sum()
    plans: dict[str, list[Plan]] = defaultdict(list)
    infos: dict[str, StoreInfo] = {}
    if (path.parent / "plans.csv.gz").exists():
        plans_found, infos = read_plans(path.parent)
        plans.update(plans_found)
    out = []
    for key, rows in frame[frame["key"].isin(keys)].groupby("key", sort=False):
        daily = rows.set_index("date")["sales"].sort_index()
        index = pd.date_range(daily.index[0], last, freq="D")
        values = daily.reindex(index).fillna(0.0)
        store, item = str(rows["store"].iloc[0]), str(rows["item"].iloc[0])
        pool = stores.loc[store].reindex(index).fillna(0.0).to_numpy(float)
        info = infos.get(store)
        statics = (
            {"store_type": info.store_type or "", "assortment": info.assortment or ""}
            if info
            else {}
        )
        out.append(
            Series(
                dataset,
                str(key),
                store,
                item,
                index[0].date(),
                values.to_numpy(float),
                country,
                pool,
                tuple(plans.get(store, ())),
                info,
                statics,
            )
        )
    order = {k: i for i, k in enumerate(keys)}
    return sorted(out, key=lambda s: order[s.key])


def origin_days(last: date, count: int, every: int = 61) -> list[date]:
    """``count`` origins ``every`` days apart (about two months: every season is visited
    within a year), the last leaving the last ``HORIZON`` days for testing."""
    final = last - timedelta(days=HORIZON)
    return [final - timedelta(days=every * k) for k in range(count - 1, -1, -1)]


def naive_reference(values: np.ndarray, origin: int) -> np.ndarray:
    """ACCURACY.md's baseline: the same weekday a week earlier, going back another week where
    that day had no sales or lies inside the test window."""
    out = np.zeros(HORIZON)
    for k in range(HORIZON):
        day = origin + 1 + k
        back = day - 7
        while back >= 0 and (back > origin or values[back] <= 0):
            back -= 7
        out[k] = values[back] if back >= 0 else 0.0
    return out
