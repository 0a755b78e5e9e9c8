"""The console's FastAPI app: HTML pages and the JSON API they share (``/api/...``).

Pages are rendered on the server from the same payloads as the API; charts are drawn by
plotly.js, served from the plotly package's own copy (nothing loads from the internet: the
OpenAPI description is at ``/api/openapi.json``, without a docs UI that would load one).
Handlers await reads that run on the console's own small pool (``reads``), never on the
service's threads; the guards in ``middleware`` act before any body is read.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from shelfcast.console import api, pages
from shelfcast.console.access import ConsoleAccessError
from shelfcast.console.middleware import (
    AccessGuard,
    BodyLimit,
    HostAllowList,
    RateLimit,
    SecurityHeaders,
)
from shelfcast.console.state import Console
from shelfcast.errors import ShelfcastError
from shelfcast.settings import Settings, is_loopback
from streaming.errors import StreamingError

__all__ = ["allowed_hosts", "create_app"]

_HERE = Path(__file__).parent
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(settings: Settings) -> tuple[str, ...]:
    """The Host names the console answers to: the setting, else loopback's names and the
    address it listens on (unless that is a wildcard such as 0.0.0.0)."""
    if settings.console_allowed_hosts:
        return settings.console_allowed_hosts
    host = settings.console_host.strip("[]")
    wildcard = host in ("0.0.0.0", "::", "")
    return _LOOPBACK_NAMES + (() if wildcard or is_loopback(host) else (host,))


def create_app(settings: Settings, status: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """The console for ``settings``; ``status`` builds ``/api/status`` (default: the
    console's own reader of what ``shelfcast status --json`` prints, with one shared Kafka
    consumer)."""
    shared = Console.build(settings, status)
    app = FastAPI(
        title="Shelfcast console", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json"
    )
    app.state.console = shared

    @app.exception_handler(ConsoleAccessError)
    def _refused(_request: Request, exc: ConsoleAccessError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ShelfcastError)
    @app.exception_handler(StreamingError)
    def _bad(_request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    app.include_router(api.router)
    app.include_router(pages.router)
    # After the plotly route: a mount matches every path under it.
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    # Added innermost first: a request meets the headers' wrapper, then the body limit, the
    # host check, the rate limit and the access rules, before any handler.
    app.add_middleware(AccessGuard, policy=shared.policy)
    rate = settings.console_requests_per_second
    app.add_middleware(RateLimit, rate=rate, burst=max(1.0, 2 * rate))
    app.add_middleware(HostAllowList, allowed=allowed_hosts(settings))
    app.add_middleware(BodyLimit, limit=settings.console_max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app
