"""What must hold after any fault: nothing lost, nothing doubled, every change forecast."""

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date
from typing import Any

from deltalake import DeltaTable

from contracts import parse_forecast
from shelfcast.settings import Settings
from tests.support.topics import read_topic

__all__ = ["assert_invariants", "settled", "stored"]


def _table(settings: Settings, name: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    path = settings.delta_dir / name
    if not DeltaTable.is_deltatable(str(path)):
        return []
    rows: list[dict[str, Any]] = DeltaTable(str(path)).to_pyarrow_table(columns=columns).to_pylist()
    return rows


def problems(
    settings: Settings, produced: list[dict[str, Any]], read_timeout: float = 5.0
) -> list[str]:
    """Every invariant that does not hold (empty once the service has caught up)."""
    found: list[str] = []
    sales = _table(
        settings, "pos_sales", ["event_id", "store_id", "item_id", "sale_date", "quantity"]
    )
    ids = [r["event_id"] for r in sales]
    expected = {e["event_id"] for e in produced}
    if len(ids) != len(set(ids)):
        found.append(f"pos_sales holds {len(ids) - len(set(ids))} events twice")
    if set(ids) != expected:
        found.append(
            f"pos_sales: {len(expected - set(ids))} produced events missing, "
            f"{len(set(ids) - expected)} unexpected"
        )
    sums: dict[tuple[str, str, date], list[float]] = defaultdict(lambda: [0.0, 0])
    for r in sales:
        cell = sums[(r["store_id"], r["item_id"], r["sale_date"])]
        cell[0] += r["quantity"]
        cell[1] += 1
    daily = {
        (r["store_id"], r["item_id"], r["day"]): [r["units"], r["event_count"]]
        for r in _table(settings, "daily_sales")
    }
    if {k: round(v[0], 6) for k, v in daily.items()} != {
        k: round(v[0], 6) for k, v in sums.items()
    }:
        found.append("daily_sales units differ from the sums over pos_sales")
    if {k: v[1] for k, v in daily.items()} != {k: v[1] for k, v in sums.items()}:
        found.append("daily_sales event counts differ from pos_sales")
    per_series = Counter[tuple[str, str]]()
    last_day: dict[tuple[str, str], date] = {}
    for (store, item, day), (_, count) in daily.items():
        per_series[(store, item)] += count
        last_day[(store, item)] = max(day, last_day.get((store, item), day))
    state = {(r["store_id"], r["item_id"]): r for r in _table(settings, "series_state")}
    if {k: r["total_events"] for k, r in state.items()} != dict(per_series):
        found.append("series_state total_events disagree with daily_sales")
    messages = read_topic(settings, settings.topic_forecasts, len(last_day), read_timeout)
    forecasts = [parse_forecast(m.value()) for m in messages]
    versions = Counter((f.key, f.model_version) for f in forecasts)
    twice = [k for k, n in versions.items() if n > 1]
    if twice:
        found.append(f"model versions published twice: {twice[:5]}")
    newest: dict[str, date] = {}
    for f in forecasts:
        newest[f.key] = max(f.data_through, newest.get(f.key, f.data_through))
    stale = {
        f"{s}|{i}": (str(newest.get(f"{s}|{i}")), str(day))
        for (s, i), day in last_day.items()
        if newest.get(f"{s}|{i}") != day
    }
    if stale:
        found.append(f"series without a forecast at their newest data: {json.dumps(stale)[:400]}")
    return found


def settled(
    settings: Settings, produced: list[dict[str, Any]], timeout: float, alive: Callable[[], bool]
) -> None:
    """Wait until every invariant holds and the service still runs; fail with what does not."""
    deadline = time.monotonic() + timeout
    left: list[str] = ["not checked yet"]
    while time.monotonic() < deadline:
        assert alive(), "the service is not running"
        left = problems(settings, produced)
        if not left:
            return
        time.sleep(2)
    raise AssertionError("invariants still broken: " + "; ".join(left))


def assert_invariants(
    settings: Settings, produced: list[dict[str, Any]], alive: Callable[[], bool]
) -> None:
    """The invariants hold now, and the service runs."""
    assert alive(), "the service is not running"
    # Read once, not polled: a fresh consumer gets more than the polling reads' 5 s.
    left = problems(settings, produced, read_timeout=30)
    assert not left, "; ".join(left)


def stored(settings: Settings, timeout: float, alive: Callable[[], bool]) -> None:
    """Wait until the service has stored its first events."""
    table = str(settings.delta_dir / "pos_sales")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert alive(), "the service is not running"
        if (
            DeltaTable.is_deltatable(table)
            and DeltaTable(table).to_pyarrow_table(columns=["event_id"]).num_rows
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"no events stored within {timeout:g} s")
