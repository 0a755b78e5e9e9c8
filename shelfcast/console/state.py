"""What the console's routers share: its settings, data readers, read pool and templates."""

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates

from shelfcast.console.access import AccessPolicy
from shelfcast.console.data import ConsoleData
from shelfcast.console.reads import ReadPool
from shelfcast.settings import Settings

__all__ = ["Console", "console"]

_HERE = Path(__file__).parent


@dataclass
class Console:
    settings: Settings
    data: ConsoleData
    pool: ReadPool
    policy: AccessPolicy
    read_status: Callable[[], dict[str, Any]]
    templates: Jinja2Templates
    # Pages as rendered, by URL: (when, (body, media type)); see pages.rendered.
    pages: OrderedDict[Any, tuple[float, tuple[bytes, str | None]]] = field(
        default_factory=OrderedDict
    )

    @classmethod
    def build(
        cls, settings: Settings, status: Callable[[], dict[str, Any]] | None = None
    ) -> "Console":
        data = ConsoleData(settings)
        return cls(
            settings=settings,
            data=data,
            pool=ReadPool(settings.console_workers),
            policy=AccessPolicy(settings),
            read_status=data.status if status is None else status,
            templates=Jinja2Templates(directory=str(_HERE / "templates")),
        )

    async def status(self) -> dict[str, Any]:
        """The status payload, read at most once per cache period whoever asks."""
        return await self.pool.get("status", self.read_status)

    def close(self) -> None:
        self.pool.close()
        self.data.close()


def console(request: Request) -> Console:
    """The console of the app serving ``request`` (a FastAPI dependency)."""
    found: Console = request.app.state.console
    return found
