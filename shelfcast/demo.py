"""``shelfcast demo``: the embedded stack, the service and a POS simulator, with a live view.

The view appears at once and shows the start-up, the history replay and then the pipeline.
Everything starts side by side, the longest first: the service (Spark's JVM) with the
broker and the Ray head; the history goes on the topic as soon as the topics exist, before
the service's query reads its first micro-batch, which then holds all of it. On 2 cores
every process of the start-up competes for the same CPU, so the demo's JVMs start lighter
(the client JIT only). Ctrl-C stops everything the demo started (and only that), by pid,
within seconds: the service drains its batch in flight (bounded), then the simulator and
the stack go down together.

A demo run again on the same data dir sends the same history (its event ids are the same, so
it is stored once) and then live sales of its own: their ids carry a prefix new to each run,
and they start on the day after the newest sale day stored.
"""

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import RenderableType

from shelfcast.embedded import (
    client_jit_options,
    running,
    start_broker,
    start_ray,
    stop_all,
    stop_process,
)
from shelfcast.kafka import ensure_topics
from shelfcast.live import (
    Poller,
    Replay,
    Step,
    View,
    console_address,
    events_read,
    observe,
    render,
    show_live,
)
from shelfcast.settings import Settings
from shelfcast.status import gather_status, ingest_lag

__all__ = ["run_demo"]

# The service drains its batch in flight within this (it bounds its own stop to ~5 s), or
# is killed: its batch is then replayed from the checkpoint at the next start.
SERVICE_STOP_SECONDS = 6.0
# The service, started beside the stack, waits this long for the broker and Ray to listen
# (the stack's own start gives up after 60 s).
STACK_WAIT_SECONDS = 90


def _jvm_env() -> dict[str, str]:
    """The demo's JVMs (its broker, the service's Spark driver) with the client JIT only
    (:data:`shelfcast.embedded.CLIENT_JIT`): a demo at 40 events/s never needs C2's peak
    speed."""
    return {"JAVA_TOOL_OPTIONS": client_jit_options(os.environ.get("JAVA_TOOL_OPTIONS", ""))}


def _cli(settings: Settings, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "shelfcast.cli",
        *args,
        "--data-dir",
        str(settings.data_dir),
        "--bootstrap",
        settings.bootstrap_servers,
    ]


def _spawn(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )


def _newest_sale_day(settings: Settings) -> date | None:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        days = (
            DeltaTable(str(settings.delta_dir / "series_state"))
            .to_pyarrow_table(columns=["last_sale_day"])
            .column("last_sale_day")
            .to_pylist()
        )
    except TableNotFoundError:
        return None
    known = [d for d in days if d is not None]
    return max(known) if known else None


class _Demo:
    """The demo's state: what it started, and the view of it."""

    def __init__(self, settings: Settings, stop: threading.Event, history: tuple[date, int]):
        self.settings = settings
        self.stop = stop
        self.started_wall = datetime.now(UTC)
        links = {"logs": str(settings.run_dir)}
        console = console_address(settings)
        if console:
            links = {"console": console, **links}
        if settings.metrics_port:
            links["metrics"] = f"http://127.0.0.1:{settings.metrics_port}/metrics"
        self.view = View("shelfcast demo", time.monotonic(), links=links)
        self.children: list[subprocess.Popen[bytes]] = []
        self.service: subprocess.Popen[bytes] | None = None
        self.first_day, self.days = history
        self.sending = False
        self.base_sent: int | None = None  # events on the topic before the simulator ran
        self.replay_started: float | None = None
        self.replay_done: float | None = None

    # the frame, read by the view's own refresh thread ---------------------------------------

    def frame(self) -> RenderableType:
        now = time.monotonic()
        if self.stop.is_set() and self.view.stopping is None:
            self.view.stopping = now  # shown at once, whatever the main thread is doing
        return render(self.view, now)

    # start-up ---------------------------------------------------------------------------------

    def step(self, name: str, action: Callable[[], Any], note: str = "") -> Any:
        at = time.monotonic()
        self.view.steps.append(Step(name, at, note=note))
        result = action()
        self.view.steps[-1] = Step(name, at, time.monotonic() - at, note)
        return result

    def start_stack(self) -> None:
        """The broker and the Ray head start side by side (each waits for its port)."""
        failures: list[BaseException] = []

        def run(action: Callable[[], Any]) -> None:
            try:
                action()
            except BaseException as exc:
                failures.append(exc)

        parts = []
        if self.settings.embedded_broker:
            parts.append(lambda: start_broker(self.settings, env=_jvm_env()))
        if self.settings.embedded_ray:
            parts.append(lambda: start_ray(self.settings))

        def both() -> None:
            threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in parts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if failures:
                raise failures[0]

        self.step("kafka + ray", both)

    # the status poller's work ------------------------------------------------------------------

    def gather(self) -> dict[str, Any]:
        status = gather_status(self.settings)
        status["newest_sale_day"] = _newest_sale_day(self.settings)
        return status

    def take(self, status: dict[str, Any]) -> None:
        """A newly gathered status into the view: replay progress, the first forecast."""
        now = time.monotonic()
        observe(self.view, status, now)
        counts = events_read(status)
        if counts is not None and self.base_sent is None and self.replay_started is None:
            self.base_sent = counts[0]
        if self.view.first_forecast is None:
            for f in (status.get("coordinator") or {}).get("latest") or []:
                at = datetime.fromisoformat(str(f["at"]))
                if at.tzinfo is None:
                    at = at.replace(tzinfo=UTC)
                if at >= self.started_wall:
                    self.view.first_forecast = (at - self.started_wall).total_seconds()
                    break
        if self.replay_started is None:
            return
        through: date | None = status.get("newest_sale_day")
        base = self.base_sent or 0
        sent, read = (counts[0] - base, counts[1] - base) if counts else (0, 0)
        replay = Replay(
            self.first_day,
            self.days,
            through,
            max(0, sent),
            max(0, min(read, sent)),
            self.sending,
            now - self.replay_started,
        )
        if self.replay_done is None and not self.sending and replay.days_stored >= self.days:
            self.replay_done = now
        if self.replay_done is not None:
            replay = replace(replay, seconds=self.replay_done - self.replay_started, done=True)
        self.view.replay = replay

    # the simulator ----------------------------------------------------------------------------

    def simulate(self, stores: int, items: int, rate: float) -> None:
        """The history at full speed, then the steady rate. Started once the topics exist:
        the history is on the topic before the service's query (which waits for Spark and
        the coordinator) reads its first micro-batch, so that batch holds all of it."""
        try:  # the topic's offsets before the replay, for its progress
            counts = events_read({"lag": ingest_lag(self.settings)})
        except Exception:  # the progress then counts what was on the topic before
            counts = None
        if counts is not None and self.base_sent is None:
            self.base_sent = counts[0]
        history = (
            "--days",
            str(self.days),
            "--start",
            self.first_day.isoformat(),
        )
        # Live sales continue after whatever an earlier run on this data dir stored, with
        # event ids of this run's own (the history's ids repeat: it is the same history).
        live_start = self.first_day + timedelta(days=self.days)
        try:
            newest = _newest_sale_day(self.settings)
        except Exception:  # a table being written: start where a first run would
            newest = None
        if newest is not None:
            live_start = max(live_start, newest + timedelta(days=1))
        live = (
            "--days",
            "365",
            "--start",
            live_start.isoformat(),
            "--rate",
            str(rate),
            "--id-prefix",
            f"sim-live-{uuid.uuid4().hex[:8]}",
        )
        for phase in (history, live):
            if self.stop.is_set():
                return
            command = _cli(
                self.settings, "simulate", "--stores", str(stores), "--items", str(items)
            )
            sim = _spawn([*command, *phase], self.settings.run_dir / "simulate.log")
            self.children.append(sim)
            if phase is history:
                self.sending, self.replay_started = True, time.monotonic()
            while sim.poll() is None and not self.stop.wait(0.2):
                pass
            self.sending = False

    # stop -------------------------------------------------------------------------------------

    def shut_down(self, stack: bool) -> None:
        """Stop what the demo started, side by side where nothing depends on it: the
        simulator and the service together (the service drains its batch in flight, stores
        the retrain news it has and lets its couriers deliver, within SERVICE_STOP_SECONDS,
        or is killed: exactly once holds either way), then the broker and Ray together."""
        children = [
            (c.pid, SERVICE_STOP_SECONDS if c is self.service else 2.0) for c in self.children
        ]
        self.step("stop service", lambda: _stop_together(children))
        import ray

        ray.shutdown()  # while the head is up: a driver left to exit after it waits on it
        if stack:
            # Ray drains for up to 30 s on SIGTERM even when idle: the service is gone and
            # nothing on it is needed any more. Kafka's controlled shutdown takes ~1 s.
            stack_processes = [
                (p.pid, 1.0 if p.name == "ray" else 5.0) for p in running(self.settings)
            ]
            self.step("stop kafka + ray", lambda: _stop_together(stack_processes))
            stop_all(self.settings)  # nothing left running: it clears the pid files


def _stop_together(processes: list[tuple[int, float]]) -> None:
    """``stop_process`` on each (pid, timeout) side by side; returns when all are gone."""
    threads = [
        threading.Thread(target=stop_process, args=(pid, timeout), daemon=True)
        for pid, timeout in processes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_demo(
    settings: Settings,
    stores: int,
    items: int,
    history_days: int,
    rate: float,
    on_signals: Callable[[], threading.Event],
) -> None:
    """Run until SIGINT/SIGTERM (``on_signals`` installs the handlers)."""
    from rich.console import Console

    from retrain.cluster.client import connect
    from shelfcast.private import private_dir
    from shelfcast.retrain_config import ray_config

    stop = on_signals()
    ours = signal.getsignal(signal.SIGTERM)
    # Before the first child's log file: made by its mkdir, the data dir would let other
    # users in, and every process would then warn about the folder the demo itself made.
    private_dir(settings.data_dir)
    started_stack = not running(settings)
    demo = _Demo(settings, stop, (date(2024, 1, 1), history_days))
    console = Console()
    poller: Poller | None = None
    with show_live(demo.frame, console) as tick:
        try:
            # The service starts first, beside the stack: Spark's JVM, its longest step,
            # starts while the broker and Ray do (the service waits for them to listen).
            demo.service = _spawn(
                _cli(settings, "run", "--wait-for-stack", str(STACK_WAIT_SECONDS)),
                settings.run_dir / "service.log",
                env=_jvm_env(),
            )
            demo.children.append(demo.service)
            demo.start_stack()
            if not stop.is_set():
                demo.step("topics", lambda: ensure_topics(settings))
                # The history goes on the topic while this process joins Ray.
                feeder = threading.Thread(
                    target=demo.simulate,
                    args=(stores, items, rate),
                    name="shelfcast-demo-sim",
                    daemon=True,
                )
                feeder.start()
                demo.step("ray driver", lambda: connect(ray_config(settings)))
                signal.signal(signal.SIGTERM, ours)  # Ray's init put in its own
            if not stop.is_set():
                poller = Poller(demo.gather, every=1.0).start()
            seen = 0
            while not stop.wait(0.25):
                tick()
                if poller is not None and poller.rounds != seen and poller.latest is not None:
                    seen = poller.rounds
                    demo.take(poller.latest)
                    demo.view.note = poller.failure
                service = demo.service
                if service is not None and service.poll() is not None:
                    demo.view.note = (
                        f"the service exited ({service.returncode}); see "
                        f"{settings.run_dir / 'service.log'}"
                    )
                    break
        finally:
            stop.set()
            stopping = time.monotonic()
            demo.view.stopping = demo.view.stopping or stopping
            console.print("the service finishes its batch in flight, then the stack goes down")
            if poller is not None:
                poller.stop()
            demo.shut_down(started_stack)
    console.print(f"demo stopped in {time.monotonic() - (demo.view.stopping or stopping):.1f} s")
    # What is left lives until exit: no full garbage collection over it at exit (it took
    # 2.5 s of a loaded machine's time, after everything had stopped).
    gc.freeze()
