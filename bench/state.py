"""Benchmark: the hand-off's per-batch read of ``series_state`` and its trigger pass.

Each micro-batch and idle tick the hand-off needs the state of the series that may be due.
Baseline, in the same process: read the Delta table whole and convert it to rows, as the
driver did before it mirrored the table. Then ``TableStore.series_state()``, the mirror kept
by the table's one writer. Then the trigger policy over every row, against the policy over
the rows with news since their last hand-over (``waiting_series``, kept with the mirror):
between waves, a ``--waiting`` share of the series (a trickle of sales).

Then the driver's memory a series (tracemalloc): the mirror's row, and the served forecast
the hand-off keeps to score live error (28 days, 14 of them scored) as it was kept before
(a dataclass with a dict of dates and floats and a list of errors) against ``Served``.

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


def measure(n: int, now: datetime, waiting: float) -> tuple[float, float, float, float]:
    """ms for: the table read whole, the mirror, the mirror and the trigger policy over every
    row, the mirror and the policy over the waiting rows."""
    with tempfile.TemporaryDirectory() as tmp:
        store = TableStore(Path(tmp))
        store.ensure()
        store.upsert_series_once(fleet(n, now, waiting), "bench", 0)

        def whole() -> dict[str, Any]:
            rows = store.read("series_state").to_pylist()
            return {series_key(r["store_id"], r["item_id"]): r for r in rows}

        base = best_ms(whole)
        store.series_state()  # the mirror is filled once, at the first batch
        ours = best_ms(store.series_state)
        policy = best_ms(lambda: due_series(store.series_state().values(), Thresholds(), now))
        every = Thresholds(max_series_per_wave=n)  # the same series, in any order of ties
        assert sorted(
            due_among(store.series_state(), store.waiting_series(), every, now), key=str
        ) == sorted(due_series(store.series_state().values(), every, now), key=str)
        waiting_ms = best_ms(
            lambda: due_among(store.series_state(), store.waiting_series(), Thresholds(), now)
        )
    return base, ours, policy, waiting_ms


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
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = {f"S{i // 50:05d}|I{i % 50:05d}": build(i) for i in range(n)}
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return size / n


def served_memory(n: int) -> tuple[float, float, float]:
    """Bytes a series: the mirror's row, the served forecast as a dict, as ``Served``."""
    first = date(2024, 6, 1)
    now = datetime.now(UTC)
    row = fleet(1, now, 0.0).to_pylist()[0]

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

    mirror = bytes_a_series(lambda i: {**row, "item_id": str(i)}, n)
    return mirror, bytes_a_series(dict_served, n), bytes_a_series(served, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--waiting", type=float, default=0.01, help="share of series with news (default 0.01)"
    )
    args = parser.parse_args()
    now = datetime.now(UTC)
    print(
        f"{'series':>8}{'read whole':>12}{'mirror':>10}{'+ trigger':>11}{'+ waiting':>11}"
        "  (ms)  mirror/whole  waiting/trigger"
    )
    for n in args.series:
        base, ours, policy, waiting_ms = measure(n, now, args.waiting)
        print(
            f"{n:>8}{base:>12.1f}{ours:>10.1f}{policy:>11.1f}{waiting_ms:>11.1f}"
            f"{ours / base:>20.4f}{waiting_ms / policy:>17.4f}"
        )
    print(f"\n{'series':>8}{'mirror row':>12}{'served (dict)':>15}{'Served':>9}  (bytes a series)")
    for n in args.series:
        mirror, before, after = served_memory(n)
        print(
            f"{n:>8}{mirror:>12.0f}{before:>15.0f}{after:>9.0f}"
            f"  Served/dict {after / before:.3f}; MB per 100,000 series: mirror "
            f"{mirror * 1e5 / 2**20:.0f}, served {before * 1e5 / 2**20:.0f} -> "
            f"{after * 1e5 / 2**20:.0f}"
        )


if __name__ == "__main__":
    main()
