"""Who may change things through the console.

Reads are open. Writes: with a token set (``SHELFCAST_CONSOLE_TOKEN``), only a request whose
``Authorization: Bearer <token>`` header matches; without one, only when the console listens
on loopback. Bound beyond loopback without a token, the console is read-only.
"""

import hmac
import ipaddress

from pydantic import SecretStr

from shelfcast.errors import ShelfcastError

__all__ = ["ConsoleAccessError", "check_write", "is_loopback"]


class ConsoleAccessError(ShelfcastError):
    """A write the console refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) reaches this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_write(bind_host: str, token: SecretStr | None, authorization: str | None) -> None:
    """Raise ``ConsoleAccessError`` unless a write with this ``Authorization`` header may go."""
    if token is None:
        if is_loopback(bind_host):
            return
        raise ConsoleAccessError(
            f"The console listens on {bind_host}, beyond loopback, and is read-only there: "
            "set SHELFCAST_CONSOLE_TOKEN and send it as 'Authorization: Bearer <token>', "
            "or use 'shelfcast thresholds' on the service's machine.",
            403,
        )
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise ConsoleAccessError(
            "Changes need the console token: send 'Authorization: Bearer <token>' "
            "(SHELFCAST_CONSOLE_TOKEN); reads need none.",
            401,
        )
