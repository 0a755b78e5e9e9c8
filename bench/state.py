"""Benchmark: the hand-off's per-batch read of ``series_state`` at fleet sizes.

Each micro-batch the hand-off needs every series' state (the trigger policy may pick any of
them). Baseline, in the same process: read the Delta table whole and convert it to rows, as
the driver did before it mirrored the table. Then ``TableStore.series_state()``, the mirror
kept by the table's one writer. Both followed by the trigger policy itself.

    python -m bench.state [--series 10000 100000]
"""

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from contracts.series import series_key
from streaming.schemas import SERIES_STATE
from streaming.tables import TableStore
from streaming.trigger import Thresholds, due_series

ROUNDS = 3


def fleet(n: int, now: datetime) -> pa.Table:
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
    rows = [{**row, "store_id": str(i // 1000), "item_id": str(i % 1000)} for i in range(n)]
    return pa.Table.from_pylist(rows, schema=SERIES_STATE)


def best_ms(step: Callable[[], Any]) -> float:
    took = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        step()
        took.append(time.perf_counter() - began)
    return 1000 * min(took)


def measure(n: int, now: datetime) -> tuple[float, float, float]:
    """ms for: the table read whole, the mirror, the mirror and the trigger policy."""
    with tempfile.TemporaryDirectory() as tmp:
        store = TableStore(Path(tmp))
        store.ensure()
        store.upsert_series_once(fleet(n, now), "bench", 0)

        def whole() -> dict[str, Any]:
            rows = store.read("series_state").to_pylist()
            return {series_key(r["store_id"], r["item_id"]): r for r in rows}

        base = best_ms(whole)
        store.series_state()  # the mirror is filled once, at the first batch
        ours = best_ms(store.series_state)
        policy = best_ms(lambda: due_series(store.series_state().values(), Thresholds(), now))
    return base, ours, policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    now = datetime.now(UTC)
    print(f"{'series':>8}{'read whole':>12}{'mirror':>10}{'+ trigger':>11}  (ms)  mirror/whole")
    for n in args.series:
        base, ours, policy = measure(n, now)
        print(f"{n:>8}{base:>12.1f}{ours:>10.1f}{policy:>11.1f}{ours / base:>20.4f}")


if __name__ == "__main__":
    main()
