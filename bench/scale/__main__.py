"""Benchmark: the whole service at N series (``python -m bench.scale --series 1000``).

1. A synthetic chain (:mod:`bench.scale.chain`) of N series, two years of daily history,
   written as Parquet and loaded with ``shelfcast import`` (timed).
2. The stack (:mod:`bench.scale.stack`): Kafka, Ray (``--ray local|multinode``), Spark
   (``--spark local|standalone``) and ``shelfcast run`` in a process of its own.
3. Priming (``--prime``): ``cold`` runs ``shelfcast retrain --all --cold`` (every series'
   first selection, its group model trained first, timed apart); ``none`` leaves the
   measured wave to be each series' first.
4. The wave: one day of POS events for every series through Kafka, the service left to run
   until every series' forecast with that day's data is on the topic. Meanwhile
   ``--console-clients`` people use the console and ``shelfcast status`` is timed. One wave
   (a day) per ``--batch-sizes``, in order (default 32 then 1: series a retrain task takes,
   at most), the coordinator reconfigured before each: the same chain and stack, same run.
5. Optionally (``--ab-seconds``), a trickle of events without retrains, first alone, then
   with the console clients: the micro-batch times side by side.

It prints and writes (``<data dir>/scale-result.json``) per stage: events/s ingested and the
micro-batch times; hand-off times; coordinator CPU per series; task time per series split
into load, study (Optuna), model, record (MLflow) and publish; the time from the last event
to the last forecast; peak RSS of the driver, its Spark JVM, the coordinator and the
workers; Delta files; console and API latency; ``shelfcast status`` time; the machine's
load average at each step.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.scale.chain import Chain
from bench.scale.probe import (
    ConsoleLoad,
    ForecastWatch,
    ProcessInfo,
    batch_lines,
    delta_files,
    descendants,
    metrics,
    pct,
    ray_processes,
)
from bench.scale.stack import Stack, scale_stack
from shelfcast.embedded import free_port
from shelfcast.private import private_dir


def log(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S} load {os.getloadavg()[0]:.1f}] {text}", file=sys.stderr)


def write_history(chain: Chain, path: Path) -> int:
    import pyarrow.parquet as pq

    rows = 0
    writer = None
    for table in chain.history():
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        rows += table.num_rows
    if writer is not None:
        writer.close()
    return rows


def send_day(stack: Stack, chain: Chain, day: date, max_events: int) -> tuple[int, float, float]:
    """The day's events for every series; (events, first sent, last confirmed) as epoch s."""
    from confluent_kafka import Producer

    from shelfcast.kafka import producer_config

    producer = Producer(
        producer_config(stack.settings, **{"linger.ms": 20, "batch.num.messages": 10000})
    )
    topic = stack.settings.topic_pos_sales
    began = time.time()
    n = 0
    for event in chain.day_events(day, max_events):
        while True:
            try:
                producer.produce(
                    topic, key=f"{event['store_id']}|{event['item_id']}", value=json.dumps(event)
                )
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10000 == 0:
            producer.poll(0)
    producer.flush(300)
    return n, began, time.time()


def coordinator_status(stack: Stack) -> dict[str, Any]:
    from retrain.cluster.client import CoordinatorClient, connect
    from shelfcast.retrain_config import retrain_config

    config = retrain_config(stack.settings)
    connect(config.ray)
    return CoordinatorClient(config).status()


def stage_sums(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    out = {}
    for name, value in after.items():
        if name.startswith("shelfcast_retrain_stage_seconds_total"):
            stage = name.split('stage="')[1].split('"')[0]
            out[stage] = value - before.get(name, 0.0)
    return out


def processes(stack: Stack) -> dict[str, Any]:
    """Peak and current RSS, CPU of our processes by role."""
    assert stack.service is not None
    out: dict[str, Any] = {}
    driver = ProcessInfo.of(stack.service.pid, "driver")
    jvms = [
        info
        for pid in descendants(stack.service.pid)
        if (info := ProcessInfo.of(pid)) is not None and info.name == "java"
    ]
    ray_nodes = [pid for name, pid in stack.pids.items() if name.startswith("ray")]
    roles = ray_processes(ray_nodes)
    spark_workers = [
        info
        for name, pid in stack.pids.items()
        if name == "spark-worker"
        for p in [pid, *descendants(pid)]
        if (info := ProcessInfo.of(p)) is not None
    ]

    def one(info: ProcessInfo | None) -> dict[str, float] | None:
        if info is None:
            return None
        return {"peak_rss_mb": info.peak_rss_mb, "rss_mb": info.rss_mb, "cpu_s": info.cpu_seconds}

    out["driver"] = one(driver)
    out["driver_jvm"] = one(max(jvms, key=lambda i: i.peak_rss_mb, default=None))
    out["coordinator"] = one(max(roles["coordinator"], key=lambda i: i.peak_rss_mb, default=None))
    workers = roles["workers"]
    out["worker_max"] = one(max(workers, key=lambda i: i.peak_rss_mb, default=None))
    out["workers"] = len(workers)
    out["workers_cpu_s"] = sum(i.cpu_seconds for i in workers)
    out["ray_system_rss_mb"] = sum(i.rss_mb for i in roles["system"])
    if spark_workers:
        out["spark_standalone_peak_rss_mb"] = sum(i.peak_rss_mb for i in spark_workers)
    return out


def time_status(stack: Stack) -> float | None:
    try:
        seconds, _ = stack.command("status", "--json", timeout=120)
    except Exception as exc:
        log(f"status failed: {exc}")
        return None
    return seconds


def wait_for(what: str, test: Any, timeout: float, poll: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


def batch_size(stack: Stack, size: int) -> None:
    """The coordinators' task batch size from now on (the service's other settings kept)."""
    from retrain.cluster.client import coordinator
    from shelfcast.retrain_config import retrain_config

    config = retrain_config(stack.settings.model_copy(update={"retrain_batch_size": size}))
    for shard in range(config.shards):
        coordinator(config, owner=True, shard=shard)


def measure_wave(
    stack: Stack, chain: Chain, keys: list[str], day: date, args: argparse.Namespace
) -> dict[str, Any]:
    """One day of events for every series, and the service left to forecast them all."""
    settings, overrides = stack.settings, stack.overrides
    watch = ForecastWatch(settings, day)
    before_metrics = metrics(int(overrides["metrics_port"]))
    before_coordinator = coordinator_status(stack)
    before_procs = processes(stack)
    console = ConsoleLoad(
        int(overrides["console_port"]), keys, clients=args.console_clients, rate=args.console_rate
    )
    statuses: list[float] = []
    stop_status = threading.Event()

    def status_loop() -> None:
        while not stop_status.wait(20):
            found = time_status(stack)
            if found is not None:
                statuses.append(found)

    status_thread = threading.Thread(target=status_loop, daemon=True)
    load_start = os.getloadavg()
    wave_began = time.time()
    console.start()
    status_thread.start()
    events, first_sent, last_sent = send_day(stack, chain, day, args.max_events)
    log(f"wave: {events:,} events sent in {last_sent - first_sent:.1f} s")
    loads = []
    deadline = time.monotonic() + args.timeout
    while len(watch.arrived) < len(keys):
        watch.poll(5)
        loads.append(os.getloadavg()[0])
        if len(loads) % 6 == 0:
            log(f"wave: {len(watch.arrived):,} of {len(keys):,} forecasts")
        if time.monotonic() > deadline:
            log(f"wave: timed out with {len(watch.arrived):,} of {len(keys):,}")
            break
    console.stop()
    stop_status.set()
    last = max(watch.arrived.values()) if watch.arrived else None
    after_coordinator = coordinator_status(stack)
    after_metrics = metrics(int(overrides["metrics_port"]))
    after_procs = processes(stack)
    log_lines = batch_lines(settings.data_dir / "service.log", since=wave_began)
    batches = [b for b in log_lines["batches"] if b["stored"] > 0]
    stored = sum(b["stored"] for b in batches)
    ingest_span = (max(b["at"] for b in batches) - first_sent) if batches else None
    stages = stage_sums(before_metrics, after_metrics)
    done = len(watch.arrived)
    coordinator_cpu = after_coordinator["cpu_seconds"] - before_coordinator["cpu_seconds"]
    handoffs = log_lines["handoffs"]
    wave = {
        "series": len(keys),
        "forecasts": done,
        "events": events,
        "send_s": last_sent - first_sent,
        "last_event_to_last_forecast_s": None if last is None else last - last_sent,
        "first_forecast_after_last_event_s": None
        if not watch.arrived
        else min(watch.arrived.values()) - last_sent,
        "ingest": {
            "stored": stored,
            "batches": len(batches),
            "events_per_s": stored / ingest_span if ingest_span else None,
            "batch_s_p50": statistics.median([b["seconds"] for b in batches]) if batches else None,
            "batch_s_p95": pct([b["seconds"] for b in batches], 0.95),
            "batch_s_max": max((b["seconds"] for b in batches), default=None),
        },
        "handoff": {
            "count": len(handoffs),
            "series": sum(h["series"] for h in handoffs),
            "seconds_total": sum(h["seconds"] for h in handoffs),
            "seconds_p50": statistics.median([h["seconds"] for h in handoffs])
            if handoffs
            else None,
            "seconds_max": max((h["seconds"] for h in handoffs), default=None),
            "ms_per_series": 1000
            * sum(h["seconds"] for h in handoffs)
            / max(1, sum(h["series"] for h in handoffs)),
        },
        "coordinator_cpu_ms_per_series": 1000 * coordinator_cpu / max(1, done),
        "task_ms_per_series": {k: 1000 * v / max(1, done) for k, v in stages.items()},
        "console": console.summary(),
        "status_s": statuses,
        "load_start": load_start,
        "load_during": {
            "mean": statistics.mean(loads) if loads else None,
            "max": max(loads, default=None),
        },
    }
    watch.close()
    # After every wave, so that a run of many days (--batch-sizes 32 32 ...) shows whether
    # the file count stays bounded and the driver's memory stays flat day after day.
    files = delta_files(settings.delta_dir)
    log(
        f"wave: last forecast {wave['last_event_to_last_forecast_s'] or 0:.1f} s after the "
        f"last event; forecasts {(files.get('forecasts') or {}).get('files')} live files; "
        f"driver RSS {(after_procs.get('driver') or {}).get('rss_mb', 0):.0f} MB"
    )
    return {
        "wave": wave,
        "processes_before": before_procs,
        "processes": after_procs,
        "delta": files,
    }


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"args": vars(args) | {"data_dir": str(data_dir)}, "load": {}}
    through = datetime.now(UTC).date() - timedelta(days=40)
    chain = Chain(args.series, through, days=args.history_days)
    keys = chain.keys()
    result["load"]["start"] = os.getloadavg()

    # 1. the history, imported
    history = data_dir / "history.parquet"
    began = time.perf_counter()
    rows = write_history(chain, history)
    result["history"] = {
        "rows": rows,
        "stores": chain.stores,
        "write_s": time.perf_counter() - began,
    }
    log(f"history: {rows:,} rows of {args.series:,} series written")

    group_by = args.group_by or ("all" if args.series <= 10_000 else "hash")
    buckets = args.group_buckets or max(1, args.series // 10_000)
    overrides: dict[str, Any] = {
        "metrics_port": free_port(),
        "console_port": free_port(),
        "ingest_trigger_seconds": 1.0,
        "handoff_idle_seconds": 2.0,
        "retrain_group_by": group_by,
        "retrain_group_buckets": buckets,
        "retrain_cold_trials": args.cold_trials,
        "retrain_task_timeout_seconds": 3600,
        # The wave is measured with the group model cached: the cold prime waits for its
        # first model, however long it takes (timed apart in the coordinator's log).
        "retrain_group_wait_seconds": 86_400,
        "retrain_group_timeout_seconds": 86_400,  # ~40 min at 100,000 series in one group
        "retrain_group_cold_trials": args.group_trials,
        "retrain_group_cpus": args.group_cpus,
        "retrain_families": args.families or None,
        "ray_num_cpus": args.cpus,
        "ray_coordinator_shards": args.shards,
    }
    with scale_stack(data_dir, args.ray, args.spark, **overrides) as stack:
        settings = stack.settings
        result["settings"] = {k: str(v) for k, v in overrides.items()}
        seconds, out = stack.command("import", str(history), timeout=7200)
        result["import"] = {"seconds": seconds, "output": out.strip(), "load": os.getloadavg()}
        result["delta_after_import"] = delta_files(settings.delta_dir)
        log(f"import: {seconds:.1f} s")
        stack.command(
            "thresholds",
            "set",
            "cooldown_seconds=0",
            "min_new_events=1",
            f"max_series_per_wave={args.handoff_max}",
        )
        stack.start_service()
        log("service starting")
        wait_for(
            "the service's first status",
            lambda: settings.service_status_file.is_file(),
            timeout=300,
        )
        wait_for("the coordinator", lambda: bool(coordinator_status(stack)), timeout=300)

        # 3. priming
        if args.prime == "cold":
            log("priming: shelfcast retrain --all --cold")
            result["load"]["prime_start"] = os.getloadavg()
            began = time.perf_counter()
            seconds, out = stack.command("retrain", "--all", "--cold", timeout=48 * 3600)
            status = coordinator_status(stack)
            result["prime"] = {
                "seconds": seconds,
                "output": out.strip()[-2000:],
                "groups": status.get("groups"),
                "load": os.getloadavg(),
            }
            log(f"primed in {time.perf_counter() - began:.1f} s")
            time.sleep(10)  # the news applied to series_state

        # 4. the waves, one a day, each with a task batch size (the coordinator reconfigured)
        day = through + timedelta(days=1)
        result["waves"] = []
        for n, size in enumerate(args.batch_sizes):
            batch_size(stack, size)
            log(f"wave {n + 1}: batches of at most {size}")
            found = measure_wave(stack, chain, keys, day + timedelta(days=n), args)
            result["waves"].append({"batch_size": size, **found})
        first = result["waves"][0]
        result["wave"] = first["wave"]  # the first wave, as before
        result["processes_before_wave"] = first["processes_before"]
        result["processes"] = result["waves"][-1]["processes"]
        result["delta"] = delta_files(settings.delta_dir)
        result["status_after_s"] = time_status(stack)
        day += timedelta(days=len(args.batch_sizes) - 1)

        # 5. micro-batch time with and without console clients
        if args.ab_seconds:
            result["ab"] = console_ab(stack, chain, keys, args, day + timedelta(days=1))
        result["load"]["end"] = os.getloadavg()
    return result


def _days_of_events(chain: Chain, first: date, max_events: int) -> Iterator[dict[str, Any]]:
    """The chain's events day after day from ``first``: a trickle longer than a day's events
    (34,000 at 10,000 series: 17 s at 2,000 a second) goes on into the next day's."""
    day = first
    while True:
        yield from chain.day_events(day, max_events, tag="ab")
        day += timedelta(days=1)


def console_ab(
    stack: Stack, chain: Chain, keys: list[str], args: argparse.Namespace, day: date
) -> dict[str, Any]:
    """A trickle of events (retrains off) for ``ab_seconds`` without clients, then as long with
    ``console_clients``; the micro-batch times of each half."""
    from confluent_kafka import Producer

    from shelfcast.kafka import producer_config

    stack.command("thresholds", "set", "min_new_events=1000000000")
    producer = Producer(producer_config(stack.settings, **{"linger.ms": 5}))
    events = _days_of_events(chain, day, args.max_events)
    out: dict[str, Any] = {}
    for half, clients in (("alone", 0), ("with_console", args.console_clients)):
        console = ConsoleLoad(
            int(stack.overrides["console_port"]), keys, clients=clients, rate=args.console_rate
        )
        console.start()
        began = time.time()
        while time.time() - began < args.ab_seconds:
            for _ in range(args.ab_rate // 10):
                event = next(events)
                producer.produce(
                    stack.settings.topic_pos_sales,
                    key=f"{event['store_id']}|{event['item_id']}",
                    value=json.dumps(event),
                )
            producer.poll(0)
            time.sleep(0.1)
        producer.flush(30)
        console.stop()
        time.sleep(3)
        seconds = [
            b["seconds"]
            for b in batch_lines(stack.settings.data_dir / "service.log", since=began)["batches"]
            if b["stored"] > 0
        ]
        out[half] = {
            "clients": clients,
            "batches": len(seconds),
            "batch_s_p50": statistics.median(seconds) if seconds else None,
            "batch_s_p95": pct(seconds, 0.95),
            "console": console.summary(),
            "load": os.getloadavg(),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument("--max-events", type=int, default=4, help="events per series-day, at most")
    parser.add_argument("--prime", choices=["cold", "none"], default="cold")
    parser.add_argument("--families", default="", help="SHELFCAST_RETRAIN_FAMILIES (empty: all)")
    parser.add_argument("--cold-trials", type=int, default=20)
    parser.add_argument("--group-by", choices=["all", "store", "hash"], default=None)
    parser.add_argument("--group-buckets", type=int, default=None)
    parser.add_argument("--group-trials", type=int, default=6, help="a group's cold trials")
    parser.add_argument("--group-cpus", type=int, default=1, help="CPUs of a group retrain")
    parser.add_argument("--ray", choices=["local", "multinode"], default="local")
    parser.add_argument("--spark", choices=["local", "standalone"], default="local")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray head")
    parser.add_argument("--shards", type=int, default=1, help="coordinator shards")
    parser.add_argument("--handoff-max", type=int, default=5000, help="max_series_per_wave")
    parser.add_argument("--console-clients", type=int, default=10)
    parser.add_argument(
        "--console-rate", type=float, default=3.0, help="requests a second per console client"
    )
    parser.add_argument("--ab-seconds", type=int, default=0)
    parser.add_argument("--ab-rate", type=int, default=2000, help="events/s of the A/B trickle")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--data-dir", type=Path, default=None, help="kept (default: a temp dir)")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[32, 1],
        help="a measured wave (a day) per size, in order: series a retrain task takes at most",
    )
    args = parser.parse_args()
    if args.data_dir is not None:
        private_dir(args.data_dir)
        result = run(args, args.data_dir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="shelfcast-scale-") as tmp:
            result = run(args, Path(tmp))
    out = json.dumps(result, indent=1, default=str)
    if args.data_dir is not None:
        (args.data_dir / "scale-result.json").write_text(out)
    print(out)


if __name__ == "__main__":
    main()
