"""The fault suite's service: ``shelfcast run`` as its own process on the session's stack."""

from collections.abc import Callable, Iterator

import pytest

from tests.support.service import ServiceProcess, services


@pytest.fixture
def service_on(ray_address: str) -> Iterator[Callable[..., ServiceProcess]]:
    """Make services; each is stopped and its coordinator actor killed at the end."""
    yield from services(ray_address, ServiceProcess.stop)
