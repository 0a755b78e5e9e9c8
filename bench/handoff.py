"""Benchmark: the hand-off's cost a series during a wave, and where it goes, at chain sizes.

A chain of ``--series`` series (``--items`` to a store) has every series queued (a wave was
handed over); its retrains then finish ``--per-handoff`` at a time, in a shuffled order, each
with a 28-day forecast, and each batch of news is one hand-off (``Handoff.tick``, on real
Delta tables): forecasts recorded, ``series_state`` merged, compaction asked for every 50
writes. ``--handoffs`` hand-offs are timed (fewer when the wave ends first); the split by
step comes from cProfile's cumulative times. Baseline, in the same process: the same at
``--baseline-series`` (small), so the ratio says how the cost a series grows with the chain.

    python -m bench.handoff [--series 100000] [--per-handoff 250] [--handoffs 40]
"""

import argparse
import cProfile
import pstats
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from bench.console import chain, state_rows
from streaming.handoff import Handoff
from streaming.schemas import SERIES_STATE
from streaming.tables import TableStore
from streaming.thresholds import ThresholdStore

THROUGH = date(2024, 6, 1)
HORIZON = 28
# Steps reported (function name as cProfile knows it -> label).
STEPS = {
    "record_forecasts": "forecasts (rows and append)",
    "record_drift": "drift",
    "upsert_series_once": "series_state merge",
    "compact_soon": "compaction (inline part)",
    "due_among": "trigger",
    "peek_updates": "news",
}


class Wave:
    """The coordinator's side: the queued series finish ``per`` at a time."""

    def __init__(self, keys: list[tuple[str, str]], per: int) -> None:
        self.pending = keys
        self.per = per
        self.seq = 0
        self.news: list[dict[str, Any]] = []

    def finish_next(self) -> int:
        done, self.pending = self.pending[: self.per], self.pending[self.per :]
        now = datetime.now(UTC)
        points = [
            {
                "date": (THROUGH + timedelta(days=d + 1)).isoformat(),
                "yhat": 3.0 + d,
                "yhat_lower": 1.0,
                "yhat_upper": 6.0 + d,
            }
            for d in range(HORIZON)
        ]
        for store_id, item_id in done:
            self.seq += 1
            self.news.append(
                {
                    "seq": self.seq,
                    "store_id": store_id,
                    "item_id": item_id,
                    "status": "done",
                    "at": now.timestamp(),
                    "seconds": 0.02,
                    "model_version": "2",
                    "error": None,
                    "mase_scale": 2.0,
                    "stages": {"model": 0.012},
                    "forecast": {
                        "model_version": 2,
                        "points": points,
                        "data_through": THROUGH.isoformat(),
                        "method": "tuned",
                        "family": "global",
                        "validation_mase": 0.8,
                        "generated_at": now.isoformat(),
                    },
                }
            )
        return len(done)

    def submit(self, due: list[Any], version: int) -> None:
        pass

    def peek_updates(self) -> list[dict[str, Any]]:
        return list(self.news)

    def ack_updates(self, seq: int) -> None:
        self.news = [u for u in self.news if u["seq"] > seq]


def measure(root: Path, args: argparse.Namespace, series: int) -> dict[str, float]:
    """ms a series: wall, process CPU, and each step's cumulative wall."""
    stores, items = chain(series, args.items)
    state = state_rows(stores, items, 1, THROUGH).to_pylist()
    for row in state:
        row.update(status="queued", last_submitted_at=datetime.now(UTC))
    store = TableStore(root / "delta")
    store.ensure()
    rows = pa.Table.from_pylist(state, SERIES_STATE)
    write_deltalake(store.uri("series_state"), rows, mode="append")
    keys = list(zip(stores.tolist(), items.tolist(), strict=True))
    order = np.random.default_rng(0).permutation(len(keys))
    wave = Wave([keys[k] for k in order], args.per_handoff)
    handoff = Handoff(store, ThresholdStore(root), wave, lambda: "bench")
    wave.finish_next()
    handoff.tick()  # the first reads the waiting rows: not timed
    profile = cProfile.Profile()
    done, wall, cpu = 0, 0.0, 0.0
    for _ in range(args.handoffs):
        finished = wave.finish_next()
        if not finished:
            break  # a small chain's wave is over
        done += finished
        began, began_cpu = time.perf_counter(), time.process_time()
        profile.enable()
        handoff.tick()
        profile.disable()
        wall += time.perf_counter() - began
        cpu += time.process_time() - began_cpu
    store.compactor.wait(600)
    stats = pstats.Stats(profile)
    steps = {label: 0.0 for label in STEPS.values()}
    for (_file, _line, name), entry in stats.stats.items():  # type: ignore[attr-defined]
        if name in STEPS:
            steps[STEPS[name]] += entry[3]
    result = {"wall": 1000 * wall / done, "cpu": 1000 * cpu / done}
    result.update({label: 1000 * seconds / done for label, seconds in steps.items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--baseline-series", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=50, help="series a store")
    parser.add_argument("--per-handoff", type=int, default=250, help="retrains a hand-off")
    parser.add_argument("--handoffs", type=int, default=40)
    args = parser.parse_args()
    results = {}
    for n in (args.baseline_series, args.series):
        with tempfile.TemporaryDirectory() as tmp:
            results[n] = measure(Path(tmp), args, n)
        split = ", ".join(f"{k} {v:.2f}" for k, v in results[n].items())
        print(f"{n:>8} series, ms a series: {split}", flush=True)
    big, small = results[args.series], results[args.baseline_series]
    print(
        f"{args.series:,} / {args.baseline_series:,} series: wall a series "
        f"{big['wall'] / small['wall']:.2f}x, CPU {big['cpu'] / small['cpu']:.2f}x"
    )


if __name__ == "__main__":
    main()
