"""Who may read and change what through the console.

Reads: open on loopback; beyond loopback they need the token (``SHELFCAST_CONSOLE_TOKEN``),
unless ``SHELFCAST_CONSOLE_READS_NEED_TOKEN`` is false. A browser sends it as HTTP Basic
auth (any user name, the token as password; it asks once), a program as
``Authorization: Bearer <token>``.

Writes: with a token set, only a request that sends it as ``Authorization: Bearer <token>``,
wherever the console listens; without one the console is read-only, unless it listens on
loopback and ``SHELFCAST_CONSOLE_TRUST_LOOPBACK`` is true. Loopback is not trusted by default:
every local user, and any reverse proxy or port-forward in front of the console, reaches it.
Writes are JSON only, so a form on another site cannot send one.
"""

import base64
import binascii
import hmac

from pydantic import SecretStr

from shelfcast.errors import ShelfcastError
from shelfcast.settings import MIN_TOKEN_LENGTH, Settings, is_loopback

__all__ = ["AccessPolicy", "ConsoleAccessError", "check_write", "is_loopback"]

_TOKEN_HINT = (
    f"set SHELFCAST_CONSOLE_TOKEN ({MIN_TOKEN_LENGTH}+ random characters) and send it as "
    "'Authorization: Bearer <token>'"
)


class ConsoleAccessError(ShelfcastError):
    """A request the console refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int, basic: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.basic = basic  # ask a browser for the token (WWW-Authenticate: Basic)


def _given(authorization: str | None, basic: bool) -> bytes | None:
    """The token a request sends: Bearer, or (``basic``) a Basic password."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value.encode() or None
    if basic and scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2] or None
    return None


def _matches(token: SecretStr, authorization: str | None, basic: bool) -> bool:
    given = _given(authorization, basic)
    # An empty token never passes, whatever the settings hold: compare_digest(b"", b"") is true.
    expected = token.get_secret_value().encode()
    return given is not None and bool(expected) and hmac.compare_digest(given, expected)


def check_write(
    bind_host: str,
    token: SecretStr | None,
    authorization: str | None,
    trust_loopback: bool = False,
) -> None:
    """Raise ``ConsoleAccessError`` unless a write with this ``Authorization`` header may go."""
    if token is None:
        if trust_loopback and is_loopback(bind_host):
            return
        where = "on loopback" if is_loopback(bind_host) else f"on {bind_host}, beyond loopback"
        raise ConsoleAccessError(
            f"The console listens {where} without a token and is read-only: {_TOKEN_HINT}, "
            "or use 'shelfcast thresholds' on the service's machine.",
            403,
        )
    if not _matches(token, authorization, basic=False):
        raise ConsoleAccessError(
            "Changes need the console token: send 'Authorization: Bearer <token>' "
            "(SHELFCAST_CONSOLE_TOKEN).",
            401,
        )


class AccessPolicy:
    """The rules above for one console's settings."""

    def __init__(self, settings: Settings) -> None:
        self.host = settings.console_host
        self.token = settings.console_token
        self.trust_loopback = settings.console_trust_loopback
        self.reads_need_token = settings.console_reads_need_token and not is_loopback(self.host)

    @property
    def writable_without_token(self) -> bool:
        return self.token is None and self.trust_loopback and is_loopback(self.host)

    def check_read(self, authorization: str | None) -> None:
        if not self.reads_need_token:
            return
        if self.token is None:
            raise ConsoleAccessError(
                f"The console listens on {self.host}, beyond loopback, where reads need the "
                f"token, and none is set: {_TOKEN_HINT}; or set "
                "SHELFCAST_CONSOLE_READS_NEED_TOKEN=false to open reads to the network.",
                403,
            )
        if not _matches(self.token, authorization, basic=True):
            raise ConsoleAccessError(
                "Reads need the console token beyond loopback: send 'Authorization: Bearer "
                "<token>', or in a browser give the token as the password.",
                401,
                basic=True,
            )

    def check_write(self, authorization: str | None) -> None:
        check_write(self.host, self.token, authorization, self.trust_loopback)
