"""The ``shelfcast`` command line."""

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from contracts.errors import ContractError
from retrain.errors import RetrainError
from shelfcast.errors import ShelfcastError
from shelfcast.settings import Settings, load_settings
from streaming.errors import StreamingError

__all__ = ["main"]

log = logging.getLogger("shelfcast")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(data_dir=args.data_dir, bootstrap_servers=args.bootstrap)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        # Said at once, before any stopping work; each command bounds its own stop.
        print(f"stopping... ({signal.Signals(signum).name})", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def cmd_up(args: argparse.Namespace) -> int:
    from shelfcast.embedded import start_broker, start_ray
    from shelfcast.kafka import ensure_topics

    settings = _settings(args)
    if settings.embedded_broker:
        proc = start_broker(settings)
        print(
            f"kafka (Apache Kafka, KRaft, data in {settings.kafka_dir}) pid {proc.pid} "
            f"on {settings.bootstrap_servers}"
        )
    if settings.embedded_ray:
        proc = start_ray(settings)
        print(f"ray head pid {proc.pid} on {settings.ray_address}")
    ensure_topics(settings)
    print(
        f"topics ready: {settings.topic_pos_sales}, {settings.topic_dlq}, "
        f"{settings.topic_forecasts}"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from shelfcast.embedded import stop_all

    stopped = stop_all(_settings(args))
    for proc in stopped:
        print(f"stopped {proc.name} (pid {proc.pid})")
    if not stopped:
        print("nothing was running")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from shelfcast.ingest import run_ingest
    from shelfcast.private import private_dir

    settings = _settings(args)
    private_dir(settings.data_dir)
    run_ingest(settings, _stop_on_signals())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from shelfcast.kafka import producer_config
    from shelfcast.pos.send import send_messages
    from shelfcast.pos.simulate import SimulationSpec, simulate_messages

    if args.plans_ahead_days < 0:
        raise ShelfcastError("--plans-ahead-days must be 0 or more.")
    if not 1 <= len(args.id_prefix) <= 100:
        raise ShelfcastError("--id-prefix must be 1 to 100 characters.")
    settings = _settings(args)
    spec = SimulationSpec(
        stores=args.stores,
        items=args.items,
        start=args.start,
        days=args.days,
        seed=args.seed,
        plans_ahead_days=args.plans_ahead_days,
        id_prefix=args.id_prefix,
    )
    topics = (settings.topic_pos_sales, settings.topic_pos_plans, settings.topic_pos_stores)
    send_messages(producer_config(settings), simulate_messages(spec, topics), rate=args.rate)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from shelfcast.kafka import producer_config
    from shelfcast.pos.plans import (
        plan_events,
        read_plans_csv,
        read_stores_csv,
        regular_weekdays,
        store_events,
    )
    from shelfcast.pos.replay import read_daily_csv, replay_messages
    from shelfcast.pos.send import send_messages

    if args.plans_ahead_days < 0:
        raise ShelfcastError("--plans-ahead-days must be 0 or more.")
    settings = _settings(args)
    frame = read_daily_csv(args.file, args.start, args.until)
    plans: list[dict[str, Any]] = []
    stores: list[dict[str, Any]] = []
    weekdays: dict[str, tuple[int, ...]] = {}
    if args.plans is not None:
        planned = read_plans_csv(args.plans)
        weekdays = regular_weekdays(planned)
        plans = plan_events(planned, weekdays, args.plans_ahead_days)
    if args.stores is not None and len(frame):
        first = frame["date"].iloc[0].date() - timedelta(days=args.plans_ahead_days)
        published = datetime(first.year, first.month, first.day, tzinfo=UTC)
        stores = store_events(read_stores_csv(args.stores), weekdays, published)
    print(
        f"replaying {len(frame):,} daily rows from {args.file}"
        + (f", {len(plans):,} plans ({args.plans_ahead_days} days ahead)" if plans else "")
        + (f", {len(stores):,} stores" if stores else ""),
        file=sys.stderr,
    )
    topics = (settings.topic_pos_sales, settings.topic_pos_plans, settings.topic_pos_stores)
    messages = replay_messages(
        frame, args.events_per_day, topics, plans, stores, args.plans_ahead_days
    )
    send_messages(producer_config(settings), messages, rate=args.rate)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from shelfcast.importer import import_history

    report = import_history(_settings(args), args.file, args.chunk_rows)
    if report.already_done:
        print(f"{args.file} was imported before ({report.app_id}): nothing to do")
        return 0
    print(
        f"imported {report.rows:,} days of {report.series:,} series in {report.stores:,} stores "
        f"({report.first_day} to {report.last_day}) into daily_sales and series_state"
        + (f"; {report.duplicates:,} duplicate rows summed" if report.duplicates else "")
        + (f"; {report.skipped_chunks} chunks had landed before" if report.skipped_chunks else "")
    )
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from shelfcast.retrain_command import all_series, chosen_series, parse_series, run_wave

    settings = _settings(args)
    series: list[tuple[Any, ...]]
    if args.all:
        series = all_series(settings)
    else:
        series = chosen_series(settings, parse_series(args.series))
    if not series:
        print("no series to retrain (series_state is empty)")
        return 0
    summary = run_wave(settings, series, cold=args.cold)
    methods = ", ".join(f"{k} {v}" for k, v in sorted(summary["methods"].items())) or "none"
    print(
        f"wave {summary['wave_id']}: {summary['total']} series in {summary['seconds']:.1f} s "
        f"at daily_sales v{summary['version']}; done {summary['done']} ({methods}), "
        f"failed {summary['failed']}, skipped as poison {summary['skipped']}"
    )
    for key, error in summary["errors"].items():
        print(f"  {key}: {error}")
    return 1 if summary["failed"] else 0


def cmd_prune_models(args: argparse.Namespace) -> int:
    from tqdm import tqdm  # type: ignore[import-untyped]

    from retrain.stores.registry import Tracker
    from retrain.stores.retention import prune_models

    settings = _settings(args)
    if settings.mlflow_tracking_uri is None and not settings.mlflow_db.is_file():
        raise ShelfcastError(f"No MLflow store at {settings.mlflow_db}: check --data-dir.")
    tracker = Tracker(
        settings.tracking_uri,
        settings.mlflow_experiment,
        create=False,
        retries=settings.mlflow_retries,
    )
    with tqdm(unit="model", file=sys.stderr) as bar:
        pruned = prune_models(tracker, args.keep, args.dry_run, lambda _name: bar.update())
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {pruned.versions} model versions of {pruned.models} series (kept the newest "
        f"{args.keep} of each, and every champion; runs, params and metrics stay)"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from retrain.cluster.client import connect
    from shelfcast.retrain_config import ray_config
    from shelfcast.service import run_service, start_spark, wait_for_stack

    settings = _settings(args)
    start_spark(settings)  # its JVM starts while the stack comes up and Ray is joined
    if args.wait_for_stack:
        wait_for_stack(settings, args.wait_for_stack)
    # Before our handlers: Ray installs its own SIGTERM handler on init.
    connect(ray_config(settings))
    run_service(settings, _stop_on_signals())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from shelfcast.status import gather_status, render_status

    settings = _settings(args)
    if args.watch:
        from shelfcast.watch import watch_status

        watch_status(settings, _stop_on_signals())  # joins Ray off the main thread
        return 0
    status = gather_status(settings)
    print(json.dumps(status, indent=2, default=str) if args.json else render_status(status))
    return 0


def cmd_thresholds(args: argparse.Namespace) -> int:
    import json

    from streaming.thresholds import ThresholdStore

    store = ThresholdStore(_settings(args).data_dir)
    if args.values and args.action != "set":
        raise ShelfcastError(
            f"'thresholds {args.action}' takes no KEY=VALUE; to change values run "
            f"'shelfcast thresholds set {' '.join(args.values)}'."
        )
    if args.action == "set":
        changes = {}
        for item in args.values:
            key, sep, value = item.partition("=")
            if not sep:
                raise ShelfcastError(f"{item!r}: write KEY=VALUE, e.g. min_new_events=50.")
            changes[key.strip()] = value.strip()
        store.set(changes, who=args.by, expect_revision=args.revision)
        print("applied; the service uses them from its next micro-batch")
    elif args.action == "reset":
        store.reset(who=args.by, expect_revision=args.revision)
        print("thresholds back to their defaults")
    elif args.action == "history":
        for entry in store.history():
            claimed = (
                entry["by"]
                if entry.get("user") in (None, entry["by"])
                else (f"{entry['by']} ({entry['user']})")
            )
            print(
                f"{str(entry['at'])[:19]}  {claimed!s:<12} {entry['key']}: "
                f"{json.dumps(entry['old'])} -> {json.dumps(entry['new'])}"
            )
        return 0
    values, revision = store.current()
    for key, value in values.model_dump(mode="json").items():
        print(f"{key} = {json.dumps(value)}")
    print(f"# revision {revision} ('set --revision {revision}' refuses a change made since)")
    return 0


def cmd_forecasts(args: argparse.Namespace) -> int:
    from shelfcast.forecasts_view import format_forecast, plot_series, read_forecasts

    settings = _settings(args)
    if args.plot:
        out = args.out or Path(f"forecast-{args.plot.replace('|', '-')}.png")
        print(f"wrote {plot_series(settings, args.plot, out)}")
        return 0
    for forecast in read_forecasts(settings, follow=args.follow):
        print(format_forecast(forecast), flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from shelfcast.demo import run_demo

    # The live view joins Ray, which replaces SIGTERM's handler: ours go in after that.
    run_demo(
        _settings(args), args.stores, args.items, args.history_days, args.rate, _stop_on_signals
    )
    return 0


class _Parser(argparse.ArgumentParser):
    """A command's parser: options may come anywhere on the line, before or after (or between)
    its positional values; argparse's default stops a ``nargs`` list at the first option."""

    _inner = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._inner:  # the intermixed parse calls back here for its two passes
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def _common(parser: argparse.ArgumentParser, kafka: bool = True, top: bool = False) -> None:
    """The options every command takes. Given before the command (``top``) they set the
    defaults; after it, they are left unset unless given, so either place works."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="debug logging",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        help="state folder (default ./.shelfcast or SHELFCAST_DATA_DIR)",
    )
    if kafka:
        parser.add_argument(
            "--bootstrap",
            default=default,
            metavar="HOST:PORT",
            help="Kafka address (default SHELFCAST_BOOTSTRAP_SERVERS)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shelfcast", description=__doc__)
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "up": (cmd_up, "start the embedded stack in the background"),
        "down": (cmd_down, "stop what 'up' started"),
        "ingest": (cmd_ingest, "run the ingest query in the foreground"),
        "simulate": (cmd_simulate, "send synthetic POS events, store records and promotions"),
        "replay": (cmd_replay, "send a daily sales CSV as POS events (and plans, stores)"),
        "import": (cmd_import, "bulk-load daily history into Delta (the service stopped)"),
        "retrain": (cmd_retrain, "re-tune and forecast series now, on the Ray cluster"),
        "run": (cmd_run, "run the whole service: ingest, trigger policy, hand-off to Ray"),
        "prune-models": (cmd_prune_models, "delete old model versions and their files"),
        "status": (cmd_status, "lag, last micro-batch, series by state, retrain queue"),
        "thresholds": (cmd_thresholds, "show or change the trigger thresholds live"),
        "forecasts": (cmd_forecasts, "read the forecast topic, or plot one series"),
        "demo": (cmd_demo, "embedded stack + service + simulator, with a live view"),
    }
    parsers = {}
    for name, (func, text) in commands.items():
        parsers[name] = p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(func=func)
        _common(p, kafka=name not in ("down", "prune-models", "import"))
    sim = parsers["simulate"]
    sim.add_argument("--stores", type=int, default=5)
    sim.add_argument("--items", type=int, default=20)
    sim.add_argument(
        "--start",
        type=date.fromisoformat,
        default=date(2024, 1, 1),
        help="first sale day (YYYY-MM-DD)",
    )
    sim.add_argument("--days", type=int, default=28)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument(
        "--id-prefix",
        default="sim",
        help="event ids are PREFIX-<serial> (default sim): the same ids again are stored once",
    )
    sim.add_argument("--rate", type=float, default=None, help="events/s (default: max)")
    sim.add_argument(
        "--plans-ahead-days",
        type=int,
        default=14,
        metavar="DAYS",
        help="publish each simulated promotion this many days ahead (default 14)",
    )
    rep = parsers["replay"]
    rep.add_argument("file", type=Path)
    rep.add_argument("--from", dest="start", type=date.fromisoformat, default=None)
    rep.add_argument("--until", type=date.fromisoformat, default=None)
    rep.add_argument("--events-per-day", type=int, default=4)
    rep.add_argument("--rate", type=float, default=None, help="events/s (default: max)")
    rep.add_argument(
        "--plans",
        type=Path,
        default=None,
        metavar="PLANS.csv",
        help="daily plans (date,store,item,promo,open,school_holiday), sent as plan events",
    )
    rep.add_argument(
        "--stores",
        type=Path,
        default=None,
        metavar="STORES.csv",
        help="store master data (store,country,subdivision,store_type,assortment,promo2), "
        "sent first",
    )
    rep.add_argument(
        "--plans-ahead-days",
        type=int,
        default=60,
        metavar="DAYS",
        help="send each plan this many days before the sales of its first day (default 60)",
    )
    imp = parsers["import"]
    imp.add_argument("file", type=Path, help="SALES.csv[.gz] or .parquet (or a folder of them)")
    imp.add_argument(
        "--chunk-rows",
        type=int,
        default=4_000_000,
        metavar="N",
        help="rows appended per commit, whole stores (default 4,000,000)",
    )
    ret = parsers["retrain"]
    which = ret.add_mutually_exclusive_group(required=True)
    which.add_argument("--series", nargs="+", metavar="STORE|ITEM", default=[])
    which.add_argument("--all", action="store_true", help="every series in series_state")
    ret.add_argument("--cold", action="store_true", help="start each study over")
    parsers["status"].add_argument("--json", action="store_true")
    parsers["status"].add_argument(
        "--watch", action="store_true", help="refresh in place until Ctrl-C"
    )
    prune = parsers["prune-models"]
    prune.add_argument("--keep", type=int, default=30, help="newest versions kept per series")
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    thr = parsers["thresholds"]
    thr.add_argument(
        "action", choices=["show", "set", "reset", "history"], nargs="?", default="show"
    )
    thr.add_argument("values", nargs="*", metavar="KEY=VALUE")
    thr.add_argument(
        "--revision",
        type=int,
        default=None,
        help="the revision you read ('thresholds show'): refuse if a key changed since",
    )
    thr.add_argument(
        "--by", default=None, help="a label for the audit trail (your OS user is recorded too)"
    )
    fc = parsers["forecasts"]
    fc.add_argument("--follow", action="store_true", help="keep waiting for new forecasts")
    fc.add_argument("--plot", metavar="STORE|ITEM", help="write the console's chart of this series")
    fc.add_argument(
        "--out", type=Path, default=None, help="F.png (needs Chromium) or F.html for --plot"
    )
    parsers["run"].add_argument(
        "--wait-for-stack",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the broker and Ray to listen (a stack starting beside "
        "the service, as in 'shelfcast demo'); Spark starts meanwhile",
    )
    demo = parsers["demo"]
    demo.add_argument("--stores", type=int, default=2)
    demo.add_argument("--items", type=int, default=5)
    demo.add_argument("--history-days", type=int, default=150, help="days sent at full speed first")
    demo.add_argument("--rate", type=float, default=40.0, help="events/s afterwards")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from retrain.cluster.client import loopback_ray_env

    loopback_ray_env()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except (ShelfcastError, ContractError, StreamingError, RetrainError) as exc:
        print(f"shelfcast: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
