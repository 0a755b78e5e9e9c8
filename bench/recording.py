"""Benchmark: what recording a series costs in MLflow, per series run against a wave's table.

A series with a model of its own is recorded as it always was: a run with its params and
metrics, the model file, a model version and the ``champion`` alias (``record_series``, six
calls: the baseline). A series the group model alone forecasts is a row of its wave's series
table, stored by the coordinator in parts of ``PART_ROWS`` (``log_series_table``: two
calls a part). Both run in this process for ``--series`` series, on the embedded SQLite store
and on an ``mlflow server`` over PostgreSQL started as docker-compose.yml starts them
(bench/postgres.py), whose processes' CPU is counted too. Prints ms of CPU and of wall time
per series, and table/run ratios.

    python -m bench.recording [--series 2000]
"""

import argparse
import contextlib
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench.postgres import mlflow_server, postgres_cluster
from bench.stores import MODEL_JSON, _group_cpu
from retrain.cluster.tables import PART_ROWS
from retrain.kernel.fallback import SeriesFit
from retrain.stores.registry import Tracker

FIT = SeriesFit(
    method="tuned",
    data_through=date(2024, 1, 1),
    points=[],
    model_json=MODEL_JSON,
    params={"family": "ets", "trend": "additive"},
    trials=3,
    validation_mae=1.0,
    validation_mase=0.8,
    family="ets",
    runner_up="theta",
    runner_up_mae=1.1,
)


def row(n: int) -> dict[str, Any]:
    """A group-served series' row, as ``retrain.cluster.task.series_row`` makes it."""
    return {
        "series": f"S{n // 50}|I{n % 50}",
        "store_id": f"S{n // 50}",
        "item_id": f"I{n % 50}",
        "model_version": 7,
        "registry_version": None,
        "run_id": "0" * 32,
        "method": "tuned",
        "family": "global",
        "members": "global",
        "runner_up_family": "ets",
        "group_model_version": 3,
        "data_version": 412,
        "data_through": "2024-01-01",
        "reason": "sales",
        "cold": False,
        "attempt": 1,
        "warm": True,
        "trials": 3,
        "fit_seconds": 0.031,
        "validation_mae": 1.0,
        "validation_mase": 0.8,
        "runner_up_validation_mae": 1.1,
        "fallback_reason": None,
        "params": json.dumps({"family": "global"}),
    }


@dataclass(frozen=True)
class Cost:
    """Per series: ms of this process' CPU, of the servers' CPU, and of wall time."""

    client_ms: float
    server_ms: float
    wall_ms: float


def measure(series: int, servers: tuple[int, ...], work: Callable[[], None]) -> Cost:
    before = _group_cpu(servers) if servers else 0.0
    began, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    server = (_group_cpu(servers) - before) if servers else 0.0
    return Cost(1000 * cpu / series, 1000 * server / series, 1000 * wall / series)


def compare(label: str, tracker: Tracker, series: int, servers: tuple[int, ...]) -> None:
    wave = tracker.start_wave("bench", {})
    with contextlib.redirect_stdout(io.StringIO()):
        tracker.record_series(wave, "warmup", "I0", FIT, {})  # connections, imports
        tracker.log_series_table(wave, [row(0)], "warmup")

    def runs() -> None:
        for n in range(series):
            tracker.record_series(wave, f"S{n // 50}", f"I{n % 50}", FIT, {"data_version": 1})

    def table() -> None:
        rows = [row(n) for n in range(series)]
        for part, start in enumerate(range(0, series, PART_ROWS)):
            tracker.log_series_table(wave, rows[start : start + PART_ROWS], f"part-{part:05d}")

    with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints a line per run
        base = measure(series, servers, runs)
        ours = measure(series, servers, table)
    print(f"{label}: {series} series, ms per series (CPU here / CPU of the servers / wall)")
    for name, cost in (("a run and a version each", base), ("rows of the wave's table", ours)):
        print(f"  {name:26} {cost.client_ms:8.3f} {cost.server_ms:8.3f} {cost.wall_ms:8.3f}")
    print(
        f"  table/runs: CPU here {ours.client_ms / base.client_ms:.4f}, wall "
        f"{ours.wall_ms / base.wall_ms:.4f}"
        + (f", servers {ours.server_ms / base.server_ms:.4f}" if servers else ""),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp:
        root = Path(tmp)
        with contextlib.redirect_stdout(io.StringIO()):
            sqlite = Tracker(
                f"sqlite:///{root / 'mlflow.db'}", "bench", (root / "artifacts").as_uri()
            )
        # After MLflow's import, which sets its loggers: not a line per model version.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        compare("SQLite (embedded)", sqlite, args.series, ())
        with (
            postgres_cluster(durable=True) as postgres,
            mlflow_server(postgres.create_database("mlflow"), root / "server", 2) as server,
        ):
            compare(
                "mlflow server on PostgreSQL",
                Tracker(server.url, "bench"),
                args.series,
                (server.pid, postgres.pid),
            )


if __name__ == "__main__":
    main()
