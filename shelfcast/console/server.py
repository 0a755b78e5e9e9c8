"""The console served by uvicorn on a thread of the console's process (``ConsoleProcess``)."""

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from shelfcast.errors import ShelfcastError
from shelfcast.settings import Settings

__all__ = ["ConsoleServer", "console_url"]

log = logging.getLogger("shelfcast.console")


def console_url(settings: Settings) -> str | None:
    """The console's address, or None when it is off (``SHELFCAST_CONSOLE_PORT`` 0 or empty)."""
    if not settings.console_port:
        return None
    host = settings.console_host
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.console_port}/"


class ConsoleServer:
    """``start`` binds the port (raising ``ShelfcastError`` when it cannot) and serves on a
    daemon thread; ``stop`` ends it within a few seconds."""

    def __init__(
        self, settings: Settings, status: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.settings = settings
        self.status = status
        self._server: Any = None
        self._app: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        import uvicorn

        from shelfcast.console.app import create_app

        host, port = self.settings.console_host, int(self.settings.console_port or 0)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ShelfcastError(
                f"The console cannot listen on {host}:{port} ({exc.strerror}): set "
                "SHELFCAST_CONSOLE_PORT to a free port, or 0 to run without the console."
            ) from exc
        self._app = app = create_app(self.settings, self.status)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            # Connections beyond this are answered 503 at once; reads queue on the pool.
            limit_concurrency=64,
            h11_max_incomplete_event_size=16 * 1024,  # request line and headers
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="shelfcast-console", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = console_url(self.settings) or ""
        if not server.started:
            raise ShelfcastError(f"The console did not start at {url}; see the log above.")
        policy = app.state.console.policy
        if policy.reads_need_token and self.settings.console_token is None:
            log.warning(
                "The console at %s refuses every request: it listens beyond loopback, where "
                "reads need SHELFCAST_CONSOLE_TOKEN, and none is set.",
                url,
            )
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._app is not None:
            self._app.state.console.close()
