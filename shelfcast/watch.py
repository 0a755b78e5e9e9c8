"""``shelfcast status --watch``: the status, refreshed in place until Ctrl-C."""

import gc
import logging
import threading
import time

from rich.console import RenderableType

from shelfcast.live import Poller, View, console_address, observe, render, show_live
from shelfcast.settings import Settings
from shelfcast.status import gather_status

__all__ = ["watch_status"]


def watch_status(settings: Settings, stop: threading.Event, every: float = 2.0) -> None:
    """Show the status every ``every`` seconds until ``stop`` is set."""
    links = {}
    console = console_address(settings)
    if console:
        links["console"] = console
    view = View("shelfcast status", time.monotonic(), links=links)
    # The poller joins Ray on its own thread (a cluster that is away must not hold the view
    # or Ctrl-C): Ray's note that it installs no SIGTERM handler there is expected.
    logging.getLogger("ray").setLevel(logging.ERROR)
    poller = Poller(lambda: gather_status(settings), every).start()

    def frame() -> RenderableType:
        return render(view, time.monotonic())

    seen = 0
    try:
        with show_live(frame) as tick:
            while not stop.wait(0.25):
                if poller.rounds != seen and poller.latest is not None:
                    seen = poller.rounds
                    observe(view, poller.latest, time.monotonic())
                    view.note = poller.failure
                tick()
    finally:
        poller.stop()
        gc.freeze()  # no full garbage collection at exit over what lives until then (~1-2 s)
