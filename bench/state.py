"""Benchmark: the hand-off's read of ``series_state`` and its trigger pass.

Each micro-batch and idle tick the hand-off needs the rows of the series that may be due:
the waiting ones (news since their last hand-over), and the ones with retrain news or new
sales. Baseline, in the same process: every row, as a mirror of the whole table held in
memory gave it (itself 0.3 s per batch at 10,000 series cheaper than reading the table
whole and converting it to rows, the baseline before it). Then ``TableStore.series_by_key``
as the hand-off calls it: the waiting rows, which the store keeps, for a tick between waves
(a ``--waiting`` share of the series: a trickle of sales); and those plus 500 series with
retrain news, read from the table, for a tick in a wave. Then the trigger policy over every
row, against the policy over the waiting rows.

Then the driver's memory (tracemalloc): every row kept (the mirror) against the waiting rows
kept, and the served forecast the hand-off keeps to score live error (28 days, 14 of them
scored) as it was kept before (a dataclass with a dict of dates and floats and a list of
errors) against ``Served``.

    python -m bench.state [--series 10000 100000] [--waiting 0.01]
"""

import argparse
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from contracts.series import series_key
from streaming.drift import Points, Served
from streaming.schemas import SERIES_STATE
from streaming.tables import TableStore
from streaming.trigger import Thresholds, due_among, due_series

ROUNDS = 3


def fleet(n: int, now: datetime, waiting: float) -> pa.Table:
    row: dict[str, Any] = {
        "total_events": 5,
        "events_since_retrain": 0,
        "days_since_retrain": 0,
        "pending_days": [],
        "first_sale_day": date(2024, 1, 1),
        "last_sale_day": date(2024, 5, 1),
        "last_sold_at": now,
        "last_event_at": now,
        "updated_batch_id": 1,
        "updated_at": now,
        "status": "done",
        "last_retrain_at": now,
        "model_version": "3",
        "last_submitted_at": now,
        "validation_mase": 0.7,
    }
    every = max(1, round(1 / waiting)) if waiting > 0 else n + 1
    rows = [
        {
            **row,
            "store_id": str(i // 1000),
            "item_id": str(i % 1000),
            "events_since_retrain": 1 if i % every == 0 else 0,
            "days_since_retrain": 1 if i % every == 0 else 0,
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=SERIES_STATE)


def best_ms(step: Callable[[], Any]) -> float:
    took = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        step()
        took.append(time.perf_counter() - began)
    return 1000 * min(took)


@dataclass
class Ticks:
    """ms for a tick's reads and trigger passes."""

    mirror: float
    between_waves: float
    in_wave: float
    policy_all: float
    policy_waiting: float


def filled(tmp: str, n: int, now: datetime, waiting: float) -> TableStore:
    store = TableStore(Path(tmp))
    store.ensure()
    store.upsert_series_once(fleet(n, now, waiting), "bench", 0)
    return TableStore(Path(tmp))  # a fresh store: nothing kept yet


def whole(store: TableStore) -> dict[str, dict[str, Any]]:
    """Every row by key: what the mirror held."""
    rows = store.read("series_state").to_pylist()
    return {series_key(r["store_id"], r["item_id"]): r for r in rows}


def ticks(n: int, now: datetime, waiting: float) -> Ticks:
    with tempfile.TemporaryDirectory() as tmp:
        store = filled(tmp, n, now, waiting)
        mirror = whole(store)
        mirror_ms = best_ms(lambda: dict(mirror))  # what a tick took from it: a copy
        waiting_keys = store.waiting_series()
        between = best_ms(lambda: store.series_by_key(store.waiting_series()))
        updated = [k for k in list(mirror)[1::7] if k not in waiting_keys][:500]
        in_wave = best_ms(lambda: store.series_by_key(store.waiting_series() | set(updated)))
        policy = best_ms(lambda: due_series(mirror.values(), Thresholds(), now))
        every = Thresholds(max_series_per_wave=n)  # the same series, in any order of ties
        state = store.series_by_key(waiting_keys)
        assert sorted(due_among(state, waiting_keys, every, now), key=str) == sorted(
            due_series(mirror.values(), every, now), key=str
        )
        waiting_ms = best_ms(
            lambda: due_among(
                store.series_by_key(store.waiting_series()),
                store.waiting_series(),
                Thresholds(),
                now,
            )
        )
    return Ticks(mirror_ms, between, in_wave, policy, waiting_ms)


def traced_bytes(build: Callable[[], Any]) -> int:
    """The bytes that what ``build()`` returns (or keeps) holds. tracemalloc runs from the
    first call to the end of the process: stopping it while delta-rs's threads allocate
    crashes CPython 3.11 (gh-128679)."""
    if not tracemalloc.is_tracing():
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    size = tracemalloc.get_traced_memory()[0] - before
    del kept
    return size


def state_memory(n: int, now: datetime, waiting: float) -> tuple[float, float]:
    """Bytes a series: every row kept (the mirror), the waiting rows kept (now)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = filled(tmp, n, now, waiting)
        mirror = traced_bytes(lambda: whole(store))
        kept = traced_bytes(lambda: store.waiting_series())  # fills the rows the store keeps
    return mirror / n, kept / n


@dataclass
class _DictServed:
    """How a served forecast was kept before ``Points`` (the baseline)."""

    model_version: int
    points: dict[date, float]
    validation_mase: float | None
    mase_scale: float | None
    evaluated_through: date | None = None
    errors: list[float] = field(default_factory=list)


def bytes_a_series(build: Callable[[int], Any], n: int) -> float:
    """Bytes that ``n`` results of ``build(i)``, kept in a dict by series key, take."""
    return traced_bytes(lambda: {f"S{i // 50:05d}|I{i % 50:05d}": build(i) for i in range(n)}) / n


def served_memory(n: int) -> tuple[float, float]:
    """Bytes a series: the served forecast as a dict, as ``Served``."""
    first = date(2024, 6, 1)

    def days(i: int) -> dict[date, float]:
        # A day is made from text, as from a forecast message: each its own object.
        return {
            date.fromisoformat((first + timedelta(days=d)).isoformat()): 1.5 * i + d
            for d in range(28)
        }

    def dict_served(i: int) -> _DictServed:
        kept = _DictServed(3, days(i), 0.7, 2.0, first + timedelta(days=13))
        kept.errors.extend(0.1 * d for d in range(14))
        return kept

    def served(i: int) -> Served:
        kept = Served(3, Points(days(i)), 0.7, 2.0)
        for d in range(14):
            kept.add_error(first + timedelta(days=d), 0.1 * d)
        return kept

    return bytes_a_series(dict_served, n), bytes_a_series(served, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--waiting", type=float, default=0.01, help="share of series with news (default 0.01)"
    )
    args = parser.parse_args()
    now = datetime.now(UTC)
    print(
        f"{'series':>8}{'mirror':>9}{'between':>9}{'in wave':>9}{'trigger':>9}{'waiting':>9}"
        "  (ms a tick)  between/mirror  in wave/mirror  waiting/trigger"
    )
    for n in args.series:
        m = ticks(n, now, args.waiting)
        print(
            f"{n:>8}{m.mirror:>9.1f}{m.between_waves:>9.1f}{m.in_wave:>9.1f}"
            f"{m.policy_all:>9.1f}{m.policy_waiting:>9.1f}{m.between_waves / m.mirror:>28.3f}"
            f"{m.in_wave / m.mirror:>16.3f}{m.policy_waiting / m.policy_all:>17.4f}"
        )
    print(
        f"\n{'series':>8}{'mirror':>9}{'kept':>7}{'served (dict)':>15}{'Served':>9}"
        "  (bytes a series)"
    )
    for n in args.series:  # last: tracemalloc slows every allocation once it runs
        mirror, kept = state_memory(n, now, args.waiting)
        before, after = served_memory(n)
        print(
            f"{n:>8}{mirror:>9.0f}{kept:>7.0f}{before:>15.0f}{after:>9.0f}"
            f"  MB per 100,000 series: series_state {mirror * 1e5 / 2**20:.0f} -> "
            f"{kept * 1e5 / 2**20:.1f} (kept/mirror {kept / mirror:.3f}),"
            f" served {before * 1e5 / 2**20:.0f} -> {after * 1e5 / 2**20:.0f}"
        )


if __name__ == "__main__":
    main()
