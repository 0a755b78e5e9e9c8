"""Benchmark: the stores' write rates, cluster mode (PostgreSQL) against the embedded default.

In one process, with a private PostgreSQL (Debian's, PostgreSQL's durable defaults) and an
``mlflow server`` on it started the way docker-compose.yml starts them (bench/postgres.py):

- MLflow: series recorded per second (``Tracker.record_series``: a run with its params and
  metrics, the model file, a model version, the ``champion`` alias: six calls), on the
  embedded SQLite store (the baseline) and on the tracking server, by 1 and ``--writers``
  processes at once (each like a Ray worker, with its own client); then with the model files
  written by the client to storage directly rather than through the server.
- Optuna: a warm series' storage work (load the study, read its trials, add ``--trials`` new
  ones, save the warm state) per second, on journal files (the baseline) and on PostgreSQL,
  by 1 and ``--writers`` processes; studies seeded first with 20 trials each, as after a
  cold wave.
- Delta: commits per second of the ingest driver's two largest writes (``append_once`` of a
  micro-batch to ``pos_sales``, ``add_daily_once`` of its increments), at 1,000 and 20,000
  events per batch.

Prints rates and cluster/embedded ratios.

    python -m bench.stores [--series 60] [--writers 2] [--trials 3] [--parts mlflow optuna delta]
"""

import argparse
import contextlib
import io
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench.postgres import mlflow_server, postgres_cluster
from retrain.cluster.client import loopback_ray_env

MODEL_JSON = "{}" * 60_000  # about a real model file's size (~120 KB)


def _mlflow_worker(
    uri: str, artifacts: str | None, experiment: str, keys: list[str], ready: Any
) -> tuple[float, float, float]:
    from retrain.kernel.fallback import SeriesFit
    from retrain.stores.registry import Tracker

    fit = SeriesFit(
        method="warm",
        data_through=date(2024, 1, 1),
        points=[],
        model_json=MODEL_JSON,
        params={"changepoint_prior_scale": 0.05, "seasonality_prior_scale": 10.0},
        trials=3,
        validation_mae=1.0,
        validation_mase=0.8,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints a line per run
        tracker = Tracker(uri, experiment, artifact_location=artifacts)
        tracker.record_series(None, "warmup", keys[0], fit, {})  # connections, imports
        ready.wait()  # every writer warmed up
        began, cpu = time.time(), time.process_time()
        for key in keys:
            tracker.record_series(None, "S1", key, fit, {"data_version": 1})
        return began, time.time(), time.process_time() - cpu


def _trial(number: int) -> Any:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return optuna.trial.create_trial(
        params={"family": "prophet", "changepoint_prior_scale": 0.05 + number / 1000},
        distributions={
            "family": CategoricalDistribution(["prophet", "ets", "theta"]),
            "changepoint_prior_scale": FloatDistribution(0.001, 0.5, log=True),
        },
        value=1.0 + number / 100,
        user_attrs={"candidate": {"family": "prophet", "params": {"cps": 0.05}}},
    )


def _optuna_seed(journal: str, url: str | None, names: list[str]) -> None:
    from retrain.stores.studies import StudyRef, open_study, save_warm_state

    ref = StudyRef(Path(journal), 8, url)
    for name in names:
        study = open_study(ref, name, cold=True)
        study.add_trials([_trial(n) for n in range(20)])
        save_warm_state(study, {"changepoint_prior_scale": 0.05}, None, {"family": "prophet"})


def _optuna_worker(
    journal: str, url: str | None, trials: int, names: list[str], ready: Any
) -> tuple[float, float, float]:
    from retrain.stores.studies import StudyRef, open_study, save_warm_state, warm_state

    ref = StudyRef(Path(journal), 8, url)
    open_study(ref, names[0], cold=False).get_trials(deepcopy=False)  # connections, imports
    ready.wait()  # every writer warmed up
    began, cpu = time.time(), time.process_time()
    for name in names:
        study = open_study(ref, name, cold=False)
        warm_state(study)
        past = study.get_trials(deepcopy=False)
        study.add_trials([_trial(len(past) + n) for n in range(trials)])
        save_warm_state(study, {"changepoint_prior_scale": 0.05}, None, {"family": "prophet"})
    return began, time.time(), time.process_time() - cpu


@dataclass(frozen=True)
class Rate:
    """Items per second, and CPU ms per item: the writers' own, and the servers' (the MLflow
    server's and PostgreSQL's processes, 0 for embedded stores)."""

    per_second: float
    client_ms: float
    server_ms: float


def _group_cpu(groups: tuple[int, ...]) -> float:
    """CPU seconds so far of every process in these process groups, or child of their leader
    (PostgreSQL's backends each lead a session of their own), with reaped children."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups or int(fields[1]) in groups:
            total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def _parallel(
    worker: Callable[..., tuple[float, float, float]],
    writers: int,
    items: list[str],
    *args: Any,
    servers: tuple[int, ...] = (),
) -> Rate:
    """``items`` over ``writers`` processes that start their timed loops together."""
    parts = [items[k::writers] for k in range(writers)]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(writers, mp_context=context) as pool:
        ready = manager.Barrier(writers)
        before = _group_cpu(servers) if servers else 0.0
        futures = [pool.submit(worker, *args, part, ready) for part in parts]
        spans = [future.result() for future in futures]
        server = (_group_cpu(servers) - before) if servers else 0.0
    began = min(s for s, _, _ in spans)
    ended = max(e for _, e, _ in spans)
    client = sum(c for _, _, c in spans)
    n = len(items)
    return Rate(n / (ended - began), 1000 * client / n, 1000 * server / n)


def _show(label: str, base: Rate, cluster: Rate) -> None:
    print(
        f"  {label}: {base.per_second:6.1f}/s ({base.client_ms:.0f} ms CPU each)   "
        f"cluster {cluster.per_second:6.1f}/s ({cluster.client_ms:.0f} ms CPU each in the "
        f"writer, {cluster.server_ms:.0f} in the servers)   "
        f"{cluster.per_second / base.per_second:.2f}x",
        flush=True,
    )


def bench_mlflow(
    series: int, writers: int, server_url: str, servers: tuple[int, ...], root: Path
) -> dict[int, tuple[Rate, Rate]]:
    """Per writer count: (SQLite, the server on PostgreSQL)."""
    from retrain.stores.registry import Tracker

    keys = [f"I{n:04d}" for n in range(series)]
    root.mkdir(parents=True, exist_ok=True)
    sqlite = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    # The stores and the experiment first: writers must not race to create (or migrate) them.
    with contextlib.redirect_stdout(io.StringIO()):
        Tracker(sqlite, "bench", artifact_location=artifacts)
        Tracker(server_url, "bench")
        # Model files written by the client straight to storage (here a local folder; an
        # object store in a cluster): the server then only records metadata.
        Tracker(server_url, "bench-direct", artifact_location=(root / "direct").as_uri())
    rates = {}
    for n in (1, writers):
        items = [f"{k}-w{n}" for k in keys]
        base = _parallel(_mlflow_worker, n, items, sqlite, artifacts, "bench")
        cluster = _parallel(_mlflow_worker, n, items, server_url, None, "bench", servers=servers)
        _show(f"{n} writer(s), series recorded: SQLite", base, cluster)
        rates[n] = (base, cluster)
    items = [f"{k}-direct" for k in keys]
    direct = _parallel(_mlflow_worker, 1, items, server_url, None, "bench-direct", servers=servers)
    _show("1 writer, model files not through the server: SQLite", rates[1][0], direct)
    return rates


def bench_optuna(
    series: int, writers: int, trials: int, url: str, servers: tuple[int, ...], root: Path
) -> dict[int, tuple[Rate, Rate]]:
    """Per writer count: (journal files, PostgreSQL)."""
    names = [f"shelfcast|S1|I{n:04d}" for n in range(series)]
    journal = str(root / "optuna")
    _optuna_seed(journal, None, names)
    _optuna_seed(journal, url, names)
    rates = {}
    for n in (1, writers):
        base = _parallel(_optuna_worker, n, names, journal, None, trials)
        cluster = _parallel(_optuna_worker, n, names, journal, url, trials, servers=servers)
        _show(f"{n} writer(s), warm series' study work: journal", base, cluster)
        rates[n] = (base, cluster)
    return rates


def bench_delta(root: Path, batches: int = 20) -> dict[str, float]:
    from bench.delta_write import history, pos_batch
    from streaming.aggregate import daily_increments
    from streaming.tables import TableStore

    rates = {}
    for events in (1_000, 20_000):
        store = TableStore(root / f"delta-{events}")
        store.ensure()
        store.append_once("daily_sales", history(2_000, 30), "history", 0)
        prepared = [pos_batch(b, events, 2_000) for b in range(batches + 1)]
        increments = [daily_increments(batch, b) for b, batch in enumerate(prepared)]
        store.append_once("pos_sales", prepared[0], "bench", 0)  # warm-up
        store.add_daily_once(increments[0], "bench", 0)
        began = time.perf_counter()
        for b in range(1, batches + 1):
            store.append_once("pos_sales", prepared[b], "bench", b)
            store.add_daily_once(increments[b], "bench", b)
        rates[f"{events} events"] = 2 * batches / (time.perf_counter() - began)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=60, help="series per measurement")
    parser.add_argument("--writers", type=int, default=2, help="processes writing at once")
    parser.add_argument("--trials", type=int, default=3, help="new trials per warm series")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("mlflow", "optuna", "delta"),
        default=["mlflow", "optuna", "delta"],
    )
    args = parser.parse_args()
    loopback_ray_env()

    with (
        tempfile.TemporaryDirectory(prefix="bench-stores-") as tmp,
        postgres_cluster(durable=True) as postgres,
    ):
        root = Path(tmp)
        if "mlflow" in args.parts:
            with mlflow_server(postgres.create_database("mlflow"), root / "server", 2) as server:
                print(f"MLflow: {args.series} series a run; cluster = mlflow server on PostgreSQL")
                bench_mlflow(
                    args.series, args.writers, server.url, (server.pid, postgres.pid), root / "e"
                )
        if "optuna" in args.parts:
            print(
                f"Optuna: {args.series} warm series, {args.trials} new trials each; "
                "cluster = PostgreSQL"
            )
            url = postgres.create_database("optuna").url().get_secret_value()
            bench_optuna(args.series, args.writers, args.trials, url, (postgres.pid,), root / "e")
    if "delta" in args.parts:
        with tempfile.TemporaryDirectory(prefix="bench-stores-delta-") as tmp:
            delta = bench_delta(Path(tmp))
        print("Delta commits per second (delta-rs: append + daily merge, one writer)")
        for label, rate in delta.items():
            print(f"  {label:>13} a batch: {rate:6.1f} commits/s")


if __name__ == "__main__":
    main()
