"""The console's guards, as plain ASGI middleware: each decides on the request line and
headers, before a body is parsed or any handler runs (a refusal reads the body only to let
the connection close cleanly).

From the outside in: security headers on every answer; the body size limit; the Host
allow-list; the per-client rate limit; who may read and write (``access``).
"""

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from shelfcast.console.access import AccessPolicy, ConsoleAccessError

__all__ = ["AccessGuard", "BodyLimit", "HostAllowList", "RateLimit", "SecurityHeaders"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Plotly draws with inline styles; everything else comes from the console itself.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


# How long a refusal waits for the rest of a request's body before closing anyway.
DRAIN_SECONDS = 5.0


async def _drain(receive: Receive) -> None:
    """Read the request's body to its end (``BodyLimit``, outside, bounds it)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def refuse(
    send: Send,
    status: int,
    detail: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    receive: Receive | None = None,
) -> None:
    """Answer ``status`` with ``{"detail": ...}`` as the API's errors read, and close.

    With ``receive``, the request's body is read first: a socket closed with bytes of the
    body still arriving is reset, and a reset can take the answer with it (a client sends
    the headers and the body apart, and saw "connection reset" in place of a 401)."""
    if receive is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_drain(receive), DRAIN_SECONDS)
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """CSP, frame and sniffing headers on every answer; pages and the API are not cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """No request body over ``limit`` bytes: refused by its Content-Length before a byte is
    read, and counted as it streams in (chunked, or a length that lies)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.limit):
            await refuse(send, 413, self._message())
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, started, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answered here and now; the app reads a disconnect and its answer is
                    # dropped (FastAPI would turn an exception into a 400).
                    refused = True
                    if not started:
                        started = True
                        await refuse(send, 413, self._message())
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not refused:  # the app's own failure; after a refusal, the read it broke
                raise

    def _message(self) -> str:
        return (
            f"The request body is over {self.limit:,} bytes, the console's limit "
            "(SHELFCAST_CONSOLE_MAX_BODY_BYTES); a threshold change takes a few hundred."
        )


def host_name(host_header: str) -> str:
    """The name in a Host header, without its port (IPv6 in brackets kept bare)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class HostAllowList:
    """Only requests naming an allowed host: a page on another site that makes its own name
    resolve to this machine (DNS rebinding) is refused."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = {host_name(h) for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        name = host_name(_header(scope, b"host") or "")
        if name not in self.allowed:
            await refuse(
                send,
                400,
                f"The console does not answer to the host {name!r}: add it to "
                "SHELFCAST_CONSOLE_ALLOWED_HOSTS if that is its name for you.",
                receive=receive,
            )
            return
        await self.app(scope, receive, send)


class RateLimit:
    """A token bucket per client address: ``rate`` requests a second, bursts of ``burst``.

    A client over its rate is slowed to it: its request waits (on the event loop, costing
    nothing) until its turn, up to ``max_wait`` seconds; beyond that it is answered 429 after
    a second's pause, so a client that ignores the answer cannot loop on it. Static files are
    not counted (a browser caches them)."""

    def __init__(
        self, app: ASGIApp, rate: float, burst: float, max_wait: float = 2.0, clients: int = 4096
    ) -> None:
        self.app = app
        self.rate, self.burst, self.max_wait, self.clients = rate, burst, max_wait, clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _take(self, client: str) -> float | None:
        """Seconds to wait for this request's turn (reserved), or None: refuse it."""
        now = time.monotonic()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = max(0.0, (1 - tokens) / self.rate)
        taken = wait <= self.max_wait
        self._buckets[client] = (tokens - 1 if taken else tokens, now)
        while len(self._buckets) > self.clients:
            self._buckets.popitem(last=False)
        return wait if taken else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith("/static/"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self._take(client[0] if client else "unknown")
        if wait is None:
            await asyncio.sleep(1.0)
            await refuse(
                send,
                429,
                f"Too many requests from your address: at most {self.rate:g} a second "
                "(SHELFCAST_CONSOLE_REQUESTS_PER_SECOND); try again shortly.",
                [(b"retry-after", b"1")],
                receive,
            )
            return
        if wait:
            await asyncio.sleep(wait)
        await self.app(scope, receive, send)


class AccessGuard:
    """Reads and writes as ``AccessPolicy`` says, decided on the headers alone; a write must
    also be JSON (a form on another site cannot send JSON without a preflight)."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization")
        try:
            self.policy.check_read(authorization)
            if scope["method"] not in _SAFE_METHODS:
                self.policy.check_write(authorization)
                content_type = (_header(scope, b"content-type") or "").lower()
                if not content_type.startswith("application/json"):
                    raise ConsoleAccessError(
                        "Send changes as JSON (Content-Type: application/json).", 415
                    )
        except ConsoleAccessError as exc:
            ask = [(b"www-authenticate", b'Basic realm="Shelfcast console"')] if exc.basic else []
            await refuse(send, exc.status, str(exc), ask, receive)
            return
        await self.app(scope, receive, send)
