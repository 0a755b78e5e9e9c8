"""The live terminal view of ``shelfcast demo`` and ``shelfcast status --watch``.

One screen refreshed in place (rich's ``Live``) on a terminal; on a pipe or a file, the same
view printed as plain text now and then. ``render`` is pure: a :class:`View` in, a rich
renderable out. :class:`Poller` gathers the status off the main thread (a Kafka, Delta or Ray
call may take seconds when a part is down), so the screen, and Ctrl-C, never wait for it.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from shelfcast.status import batched

__all__ = [
    "Poller",
    "Replay",
    "Step",
    "View",
    "console_address",
    "events_read",
    "observe",
    "render",
    "show_live",
]


@dataclass(frozen=True)
class Step:
    """One start-up step of the demo: what, and since when / how long it took."""

    name: str
    started: float
    seconds: float | None = None  # None: still running
    note: str = ""


@dataclass(frozen=True)
class Replay:
    """The demo's history replay: days sent at full speed before the steady rate."""

    first_day: date
    days: int
    through: date | None  # the newest sale day stored so far
    sent: int  # events on the topic since the demo started
    read: int  # of them, read by the ingest query
    sending: bool  # the simulator still sends the history
    seconds: float  # since the replay started (frozen once stored)
    done: bool = False

    @property
    def days_stored(self) -> int:
        if self.through is None:
            return 0
        return max(0, min(self.days, (self.through - self.first_day).days + 1))


@dataclass
class View:
    """Everything one frame shows; plain data."""

    title: str
    started: float  # time.monotonic() when the view appeared
    status: dict[str, Any] | None = None  # shelfcast.status.gather_status(), once gathered
    steps: list[Step] = field(default_factory=list)
    replay: Replay | None = None
    links: dict[str, str] = field(default_factory=dict)  # name -> address
    events_per_second: float | None = None
    first_forecast: float | None = None  # seconds after the view appeared
    stopping: float | None = None  # time.monotonic() when Ctrl-C came
    note: str = ""
    observed_at: float = 0.0  # when ``status`` was gathered


def console_address(settings: Any) -> str | None:
    """The web console's address, when the service serves one (``console_port``, and
    ``console_host`` when bound elsewhere than loopback); None otherwise."""
    port = getattr(settings, "console_port", None)
    if not port:
        return None
    host = getattr(settings, "console_host", None) or "127.0.0.1"
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"


def events_read(status: dict[str, Any]) -> tuple[int, int] | None:
    """(events on the topic, events the query has read) over all partitions; None unknown."""
    lag = status.get("lag") or {}
    if "error" in lag or not lag:
        return None
    return sum(p["end"] for p in lag.values()), sum(p["read"] for p in lag.values())


def observe(view: View, status: dict[str, Any], at: float) -> None:
    """Take a newly gathered status into ``view``, with the read rate since the last one."""
    before, view.status = view.status, status
    now_read, was_read = events_read(status), events_read(before or {})
    if now_read is not None and was_read is not None and at > view.observed_at:
        view.events_per_second = (now_read[1] - was_read[1]) / (at - view.observed_at)
    view.observed_at = at


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}" if seconds >= 60 else f"{seconds:.1f} s"


def _steps(view: View, now: float) -> RenderableType:
    line = Text()
    for k, step in enumerate(view.steps):
        if k:
            line.append("  ")
        if step.seconds is None:
            line.append(f"… {step.name} {_clock(now - step.started)}", style="yellow")
        else:
            line.append(f"✓ {step.name} {_clock(step.seconds)}", style="green")
        if step.note:
            line.append(f" ({step.note})", style="dim")
    return line


def _replay(replay: Replay) -> RenderableType:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=16)
    grid.add_column(width=30)
    grid.add_column()
    stored = replay.days_stored
    what = f"{stored}/{replay.days} days stored, {replay.read:,}/{replay.sent:,} events read"
    if replay.sending:
        what += " (sending…)"
    if replay.done:
        what = f"{replay.days} days stored in {_clock(replay.seconds)}, {replay.sent:,} events"
    grid.add_row(
        Text("history replay", style="bold"),
        ProgressBar(total=replay.days, completed=stored, width=30),
        what,
    )
    return grid


def _pipeline(view: View, status: dict[str, Any]) -> RenderableType:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", width=16)
    table.add_column()
    service = status.get("service") or {}
    if service.get("stopped_at"):
        state = Text(f"stopped {service['stopped_at'][:19]}", style="red")
    elif service.get("last_batch"):
        state = Text("running", style="green")
    elif service.get("started_at"):
        state = Text("starting (Spark, the query)", style="yellow")
    else:
        state = Text("not started", style="dim")
    table.add_row("service", state)
    lag = status.get("lag") or {}
    if "error" in lag:
        table.add_row("kafka", Text(lag["error"], style="red"))
    else:
        rate = f"{view.events_per_second:,.0f} ev/s read, " if view.events_per_second else ""
        parts = ", ".join(f"p{p} {v['lag']:,}" for p, v in lag.items()) or "no partitions yet"
        table.add_row("ingest", f"{rate}lag {parts}")
    batch = service.get("last_batch")
    if batch:
        table.add_row(
            "last batch",
            f"#{batch['batch_id']}: {batch['records']:,} records, {batch['stored']:,} stored, "
            f"{batch['quarantined']:,} quarantined, {batch['changed_series']} series, "
            f"{batch['seconds']:.2f} s",
        )
    series = status.get("series") or {}
    table.add_row(
        "series",
        ", ".join(f"{k} {v:,}" for k, v in sorted(series.items())) or "none yet",
    )
    c = status.get("coordinator") or {}
    if "error" in c:
        table.add_row("retrain", Text(c["error"], style="red"))
    elif "absent" in c:
        table.add_row("retrain", Text(c["absent"], style="dim"))
    elif c:
        table.add_row(
            "retrain",
            f"{c['queued']} queued, {c['running']} running on {c['capacity']} CPUs"
            f"{batched(c)}, {len(c['poisoned'])} poisoned; "
            f"{c['retrains_last_minute']} in the last minute; "
            f"{c['published']:,} forecasts published",
        )
    return table


def _forecasts(status: dict[str, Any]) -> RenderableType | None:
    latest = (status.get("coordinator") or {}).get("latest") or []
    if not latest:
        return None
    table = Table(title="latest forecasts", title_justify="left", expand=False, box=None)
    for name, justify in (
        ("at", "left"),
        ("series", "left"),
        ("version", "right"),
        ("method", "left"),
        ("study", "left"),
        ("MASE", "right"),
        ("seconds", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for f in latest[:8]:
        mase = f"{f['validation_mase']:.3f}" if f.get("validation_mase") is not None else "-"
        table.add_row(
            str(f["at"])[11:19],
            f["series"],
            f"v{f['model_version']}",
            str(f["method"]),
            "warm" if f.get("warm") else "cold",
            mase,
            f"{f['seconds']:.2f}",
        )
    return table


def render(view: View, now: float) -> RenderableType:
    """One frame of the view at ``now`` (time.monotonic())."""
    parts: list[RenderableType] = []
    head = Text()
    head.append(view.title, style="bold cyan")
    head.append(f"  {time.strftime('%H:%M:%S')}  up {_clock(now - view.started)}")
    if view.first_forecast is not None:
        head.append(f"  first forecast after {_clock(view.first_forecast)}", style="green")
    if view.stopping is not None:
        head.append(f"  stopping… {_clock(now - view.stopping)}", style="bold red")
    else:
        head.append("  Ctrl-C stops", style="dim")
    parts.append(head)
    if view.links:
        links = Text()
        for k, (name, address) in enumerate(view.links.items()):
            if k:
                links.append("  ")
            links.append(f"{name} ")
            links.append(address, style=f"underline link {address}")
        parts.append(links)
    if view.steps:
        parts.append(_steps(view, now))
    if view.replay is not None:
        parts.append(_replay(view.replay))
    if view.status is not None:
        parts.append(_pipeline(view, view.status))
        forecasts = _forecasts(view.status)
        if forecasts is not None:
            parts.append(forecasts)
    elif view.stopping is None:
        parts.append(Text("gathering status…", style="dim"))
    if view.note:
        parts.append(Text(view.note, style="yellow"))
    return Group(*parts)


class Poller:
    """Calls ``gather`` every ``every`` seconds on a thread of its own; ``latest`` holds the
    newest result and ``failure`` the last error (a status that cannot be gathered is shown,
    never raised into the view)."""

    def __init__(self, gather: Callable[[], Any], every: float) -> None:
        self.gather = gather
        self.every = every
        self.latest: Any = None
        self.failure: str = ""
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shelfcast-view", daemon=True)

    def start(self) -> "Poller":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # a gather in flight is not waited for: the thread is a daemon

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.latest, self.failure = self.gather(), ""
            except Exception as exc:  # the view shows what it can
                self.failure = f"status not gathered: {exc}"
            self.rounds += 1
            self._stop.wait(self.every)


@contextmanager
def _logs_through(console: Console) -> Iterator[None]:
    """Send log records above the live view while it runs (a raw write would tear it)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    handler.setLevel(logging.WARNING)  # the view shows the rest
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved


@contextmanager
def show_live(
    frame: Callable[[], RenderableType], console: Console | None = None, plain_every: float = 10.0
) -> Iterator[Callable[[], None]]:
    """Show ``frame()`` refreshed in place for the duration of the block; yields ``tick``,
    to call often from the block's loop (it prints a plain frame every ``plain_every`` s when
    the output is not a terminal). The last frame stays on screen afterwards."""
    console = console or Console()
    if not console.is_terminal:
        last = [float("-inf")]

        def tick() -> None:
            if time.monotonic() - last[0] >= plain_every:
                last[0] = time.monotonic()
                console.print(frame())

        yield tick
        console.print(frame())
        return
    with (
        _logs_through(console),
        Live(get_renderable=frame, console=console, refresh_per_second=4, transient=False),
    ):
        yield lambda: None
