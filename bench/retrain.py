"""Benchmark: cold full re-tune (the batch approach) against incremental warm waves.

On the shared Kaggle store-item data, the last 28 days are the test period, never seen.
The Delta tables hold every series of the data (a task reads its store whole: the
``topdown`` family splits the store's total), and the waves run the chosen series.
(a) cold: every chosen series re-tuned from scratch on data through the cut-off day.
(b) incremental: the same series tuned cold ``--new-days`` (7) earlier, then those days arrive and
    only the series they touch are re-tuned warm. Both run as waves on one real Ray head
    (plain tasks, one per series), with MLflow tracking and forecasts to Kafka, as in service.
(c) fresh: ``shelfcast retrain --all`` in its own process, as a user runs it on a cluster
    just started (``shelfcast up``): a cold wave, then a warm one after 7 new days. Its wall
    time against its tasks' own core time: the target is wall <= 1.5 x (task core-s / CPUs)
    + start-up, the start-up (command start to the first task running) measured here.
Also scored on the test period: Prophet's defaults and seasonal naive, fitted in process.

    python -m bench.retrain [--series 40] [--data PATH] [--parts primed,fresh]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.datasets import PLANS_AHEAD_DAYS, read_plans
from bench.stack import embedded_stack, write_daily_frame, write_plans, write_series_state
from contracts.series import series_key
from retrain.kernel.plans import Plan, StoreInfo
from retrain.kernel.series import History, mase, seasonal_naive
from retrain.prophet.fit import DEFAULT_PARAMS, FitOptions, fit_prophet, predict_horizon
from shelfcast.forecasts_view import read_forecasts
from shelfcast.retrain_command import run_wave
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared/data/kaggle_store_item_demand/train.csv.gz"
TEST_DAYS = 28


def choose(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    keys = frame[["store", "item"]].drop_duplicates().sort_values(["store", "item"])
    step = max(1, len(keys) // n)
    chosen = keys.iloc[::step].head(n)
    return frame.merge(chosen, on=["store", "item"])


def daily(frame: pd.DataFrame) -> pd.DataFrame:
    """Every day of each series, a missing one (a closed store, in Rossmann's data) as zero
    sales: the days the test period scores, and the history the baselines fit."""
    filled = []
    for (store, item), rows in frame.groupby(["store", "item"]):
        days = pd.date_range(rows["date"].min(), rows["date"].max(), freq="D")
        sales = rows.set_index("date")["sales"].reindex(days, fill_value=0)
        filled.append(pd.DataFrame({"date": days, "store": store, "item": item, "sales": sales}))
    return pd.concat(filled, ignore_index=True)


def forecasts(settings: Settings, expect: int) -> dict[str, Any]:
    """The newest forecast per series (the waves finished, so all are delivered)."""
    latest: dict[str, Any] = {}
    seen = 0
    for forecast in read_forecasts(settings, follow=False):
        seen += 1
        if (
            forecast.key not in latest
            or forecast.model_version > latest[forecast.key].model_version
        ):
            latest[forecast.key] = forecast
    if seen < expect:
        raise SystemExit(f"expected {expect} forecasts on {settings.topic_forecasts}, read {seen}")
    return latest


def wave(settings: Settings, keys: list[tuple[str, str, float]], cold: bool) -> dict[str, Any]:
    import ray

    from retrain.cluster.client import coordinator

    actor = coordinator(retrain_config(settings))
    ray.get(actor.drain_updates.remote())
    coordinator_cpu = ray.get(actor.status.remote())["cpu_seconds"]
    summary = run_wave(settings, keys, cold=cold)
    coordinator_cpu = ray.get(actor.status.remote())["cpu_seconds"] - coordinator_cpu
    done = [u for u in ray.get(actor.drain_updates.remote()) if u["status"] == "done"]
    cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    task = sum(u["seconds"] for u in done)
    fit = sum(u["fit_seconds"] for u in done)
    record = sum(u["record_seconds"] for u in done)
    wall = summary["seconds"]
    return {
        "series": summary["done"],
        "failed": summary["failed"],
        "wall": wall,
        "cpus": cpus,
        "per_core_minute": summary["done"] / (wall * cpus / 60),
        "fit_share_of_tasks": fit / task if task else 0.0,
        "fit_share_of_cores": fit / (wall * cpus),
        "record_share_of_tasks": record / task if task else 0.0,
        "coordinator_ms": 1000 * coordinator_cpu / max(summary["done"], 1),
        "task_ms": 1000 * task / max(len(done), 1),
        "fit_ms": 1000 * fit / max(len(done), 1),
        "record_ms": 1000 * record / max(len(done), 1),
        "methods": summary["methods"],
        "stages_ms": {
            stage: 1000 * sum(u.get("stages", {}).get(stage, 0.0) for u in done) / len(done)
            for stage in ("load", "study", "model", "record", "publish")
        }
        if done
        else {},
    }


def cli_wave(settings: Settings, cold: bool) -> dict[str, Any]:
    """``shelfcast retrain --all`` in a process of its own; where its wall time went."""
    import ray

    from retrain.cluster.client import coordinator

    env = {
        **os.environ,
        "SHELFCAST_DATA_DIR": str(settings.data_dir),
        "SHELFCAST_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "SHELFCAST_RAY_ADDRESS": settings.ray_address,
    }
    command = [str(Path(sys.executable).parent / "shelfcast"), "retrain", "--all"]
    launched = time.time()
    done = subprocess.run(
        [*command, *(["--cold"] if cold else [])],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.time() - launched
    found = re.search(r"(\d+) series in ([\d.]+) s", done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"shelfcast retrain failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    actor = coordinator(retrain_config(settings))
    updates = [
        u
        for u in ray.get(actor.drain_updates.remote())
        if u["status"] == "done" and u["at"] >= launched
    ]
    cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    tasks = sum(u["seconds"] for u in updates)
    # A task's start: its finish (the news, after the forecast is confirmed) less its time.
    first_start = min(u["at"] - u["seconds"] for u in updates) - launched
    first_done = min(u["at"] for u in updates) - launched
    last_done = max(u["at"] for u in updates) - launched
    return {
        "series": len(updates),
        "wall": wall,
        "wave": float(found.group(2)),
        "task_core_s": tasks,
        "cpus": cpus,
        "startup": first_start,
        "first_done": first_done,
        "last_done": last_done,
        "bound": 1.5 * tasks / cpus + first_start,
        "per_core_minute": len(updates) / (wall * cpus / 60),
    }


def fresh_waves(frame: pd.DataFrame, keys: list[tuple[str, str, float]], tmp: Path) -> None:
    """(c): a cold then a warm ``shelfcast retrain --all`` on a cluster just started; ``frame``
    holds every series of the data (the tables hold the stores whole), ``keys`` those due."""
    cut = frame["date"].max() - timedelta(days=TEST_DAYS)
    earlier = cut - timedelta(days=7)
    with embedded_stack(tmp / "c") as c:
        write_daily_frame(c, frame[frame["date"] <= earlier], 0)
        write_series_state(c, [(s, i) for s, i, _ in keys], 0)
        cold = cli_wave(c, cold=True)
        write_daily_frame(c, frame[(frame["date"] > earlier) & (frame["date"] <= cut)], 1)
        warm = cli_wave(c, cold=False)
    print(f"\n(c) fresh 'shelfcast retrain --all'{'cold':>12}{'warm':>12}")
    for label, key, fmt in [
        ("series", "series", "{:.0f}"),
        ("command wall seconds", "wall", "{:.1f}"),
        ("  of it the wave (submit..end)", "wave", "{:.1f}"),
        ("start-up: launch..first task", "startup", "{:.1f}"),
        ("first series done at", "first_done", "{:.1f}"),
        ("last series done at", "last_done", "{:.1f}"),
        ("tasks' own core-seconds", "task_core_s", "{:.1f}"),
        ("bound 1.5 x core-s/CPUs + start", "bound", "{:.1f}"),
        ("series per core-minute", "per_core_minute", "{:.1f}"),
    ]:
        print(f"{label:36}{fmt.format(cold[key]):>8}{fmt.format(warm[key]):>12}")
    for name, w in (("cold", cold), ("warm", warm)):
        after = w["wall"] - w["startup"]
        ideal = w["task_core_s"] / w["cpus"]
        verdict = "within" if w["wall"] <= w["bound"] else "OVER"
        print(
            f"{name}: after start-up {after:.1f} s = {after / ideal:.2f} x (task core-s / "
            f"{w['cpus']} CPUs = {ideal:.1f} s); wall {verdict} the bound"
        )


def test_mase(
    latest: dict[str, Any], truth: dict[str, np.ndarray], train: dict[str, np.ndarray]
) -> float:
    scores = []
    for key, actual in truth.items():
        yhat = np.array([p.yhat for p in latest[key].points[: len(actual)]])
        scores.append(mase(actual, yhat, train[key]))
    return float(np.mean(scores))


def baselines(
    frame: pd.DataFrame, cut: Any, truth: dict[str, np.ndarray], history_days: int
) -> dict[str, float]:
    defaults, naive = [], []
    with tempfile.TemporaryDirectory() as fit_dir:
        for (store, item), rows in frame.groupby(["store", "item"]):
            key = series_key(str(store), str(item))
            past = rows[rows["date"] <= cut].tail(history_days)
            history = History(past["date"].iloc[0].date(), past["sales"].to_numpy(float))
            model = fit_prophet(
                history.start, history.values, DEFAULT_PARAMS, FitOptions(Path(fit_dir))
            )
            yhat = predict_horizon(model, history.end, TEST_DAYS)["yhat"].to_numpy()
            defaults.append(mase(truth[key], yhat, history.values))
            naive.append(
                mase(truth[key], seasonal_naive(history.values, TEST_DAYS), history.values)
            )
    return {"defaults": float(np.mean(defaults)), "naive": float(np.mean(naive))}


def known_plans(
    path: Path, through: Any
) -> tuple[dict[str, list[Plan]], dict[str, StoreInfo]] | None:
    """The plans published by ``through`` and the store records beside a sales file (the
    Rossmann data's ``plans.csv.gz`` and ``stores.csv``), or None when it has none."""
    if not (path.parent / "plans.csv.gz").exists():
        return None
    plans, infos = read_plans(path.parent)
    horizon = (through + timedelta(days=PLANS_AHEAD_DAYS)).date()
    return {k: [p for p in v if p.start <= horizon] for k, v in plans.items()}, infos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--parts", default="primed,fresh", help="primed, fresh, or both")
    parser.add_argument(
        "--new-days",
        type=int,
        default=7,
        help="days between (b)'s cold wave and its warm one: under the group model's "
        "SHELFCAST_RETRAIN_GROUP_RETRAIN_DAYS (7), the warm wave predicts from the cached model",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    everything = pd.read_csv(args.data, parse_dates=["date"])
    frame = daily(choose(everything, args.series))
    last = frame["date"].max()
    cut = last - timedelta(days=TEST_DAYS)
    earlier = cut - timedelta(days=args.new_days)
    keys = [(str(s), str(i), 0.0) for s, i in frame[["store", "item"]].drop_duplicates().values]
    truth, train = {}, {}
    for (store, item), rows in frame.groupby(["store", "item"]):
        key = series_key(str(store), str(item))
        truth[key] = rows[rows["date"] > cut]["sales"].to_numpy(float)
        train[key] = rows[rows["date"] <= cut]["sales"].to_numpy(float)
    print(
        f"{len(keys)} series, test {cut.date() + timedelta(days=1)}..{last.date()}", file=sys.stderr
    )

    if "fresh" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            fresh_waves(everything, keys, Path(tmp))
    if "primed" not in parts:
        return
    with tempfile.TemporaryDirectory() as tmp, embedded_stack(Path(tmp) / "a") as a:
        # MASE's scale from the days the models see, as for the baselines.
        train = {key: values[-a.retrain_history_days :] for key, values in train.items()}
        write_daily_frame(a, everything[everything["date"] <= cut], 0)
        planned = known_plans(args.data, cut)
        if planned is not None:
            write_plans(a, *planned, 10)
        # The service's cluster is long-lived: start its workers and stores before timing.
        wave(a, keys[:2], cold=True)
        cold = wave(a, keys, cold=True)
        cold["test_mase"] = test_mase(forecasts(a, len(keys)), truth, train)

        b = a.model_copy(
            update={
                "data_dir": Path(tmp) / "b",
                "ray_namespace": "bench-b",
                "topic_forecasts": "fc-b",
            }
        )
        from shelfcast.kafka import ensure_topics

        ensure_topics(b)
        write_daily_frame(b, everything[everything["date"] <= earlier], 0)
        if planned is not None:
            write_plans(b, *planned, 10)
        wave(b, keys, cold=True)
        new_days = (everything["date"] > earlier) & (everything["date"] <= cut)
        write_daily_frame(b, everything[new_days], 1)
        warm = wave(b, keys, cold=False)
        warm["test_mase"] = test_mase(forecasts(b, 2 * len(keys)), truth, train)
        base = baselines(frame, cut, truth, a.retrain_history_days)

    print(f"\n{'':28}{'(a) cold':>12}{'(b) incremental':>18}")
    for label, key, fmt in [
        ("series", "series", "{:.0f}"),
        ("failed", "failed", "{:.0f}"),
        ("wall seconds", "wall", "{:.1f}"),
        ("series per core-minute", "per_core_minute", "{:.1f}"),
        ("fitting share of task time", "fit_share_of_tasks", "{:.0%}"),
        ("fitting share of core time", "fit_share_of_cores", "{:.0%}"),
        ("MLflow share of task time", "record_share_of_tasks", "{:.0%}"),
        ("coordinator CPU ms/series", "coordinator_ms", "{:.1f}"),
        ("task ms (wall, in the task)", "task_ms", "{:.0f}"),
        ("  of it fitting ms", "fit_ms", "{:.0f}"),
        ("  of it MLflow record ms", "record_ms", "{:.0f}"),
        ("test MASE", "test_mase", "{:.4f}"),
    ]:
        print(f"{label:28}{fmt.format(cold[key]):>12}{fmt.format(warm[key]):>18}")
    print(f"methods: cold {cold['methods']}, incremental {warm['methods']}")
    for name, w in (("cold", cold), ("incremental", warm)):
        split = ", ".join(f"{k} {v:.0f}" for k, v in w["stages_ms"].items())
        print(f"{name} task ms by stage: {split}")
    print(f"test MASE: Prophet defaults {base['defaults']:.4f}, seasonal naive {base['naive']:.4f}")
    print(
        f"ratios: incremental/cold speed {warm['per_core_minute'] / cold['per_core_minute']:.2f}x, "
        f"test MASE incremental/cold {warm['test_mase'] / cold['test_mase']:.4f}"
    )


if __name__ == "__main__":
    main()
