"""A Ray head for the tests, started the embedded way."""

from shelfcast.embedded import ManagedProcess, start_ray
from shelfcast.errors import EmbeddedStackError
from shelfcast.settings import Settings

__all__ = ["start_head"]


def start_head(settings: Settings) -> ManagedProcess:
    """``start_ray(settings)``, once more if it fails: 'ray start' gives its node 30 s to
    register, and once ran over them on 2 cores busy starting the other worker's broker and
    JVMs. A second failure stands."""
    try:
        return start_ray(settings)
    except EmbeddedStackError:
        return start_ray(settings)
