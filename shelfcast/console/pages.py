"""The console's HTML pages, rendered on the server from the API's own payloads."""

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response

from shelfcast.console.api import MAX_PAGE, health, series_detail, series_page, threshold_view
from shelfcast.console.data import outages_view, waves_view
from shelfcast.console.state import Console, console

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
Shared = Annotated[Console, Depends(console)]


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def page(shared: Console, request: Request, name: str, **context: Any) -> Response:
    return shared.templates.TemplateResponse(
        request,
        name,
        {
            "writable_without_token": shared.policy.writable_without_token,
            "needs_token": shared.settings.console_token is not None,
            **context,
        },
    )


async def rendered(
    shared: Console, request: Request, build: Callable[[], Awaitable[Response]]
) -> Response:
    """The page at this URL as rendered within the cache period (the same for every caller:
    a page holds no per-user content), else ``build()``'s."""
    key = ("page", request.url.path, request.url.query)
    hit = shared.pages.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < shared.pool.ttl:
        body, media_type = hit[1]
    else:
        response = await build()
        body, media_type = bytes(response.body), response.media_type
        shared.pages[key] = (now, (body, media_type))
        while len(shared.pages) > shared.pool.entries:
            shared.pages.popitem(last=False)
    return Response(body, media_type=media_type)


@router.get("/static/plotly.min.js")
def plotly_js() -> Response:
    return FileResponse(_plotly_js(), media_type="text/javascript")


@router.get("/")
async def page_health(shared: Shared, request: Request) -> Response:
    async def build() -> Response:
        return page(shared, request, "health.html", nav="health", **await health(shared))

    return await rendered(shared, request, build)


@router.get("/queue")
async def page_queue(shared: Shared, request: Request) -> Response:
    async def build() -> Response:
        current = dict(await shared.status())
        coordinator = dict(current.get("coordinator", {}))
        if "waves" in coordinator:
            coordinator["waves"] = waves_view(coordinator["waves"])
        coordinator["outages"] = outages_view(coordinator.get("outages") or {})
        current["coordinator"] = coordinator
        return page(shared, request, "queue.html", nav="queue", status=current)

    return await rendered(shared, request, build)


@router.get("/series")
async def page_series(
    shared: Shared, request: Request, q: str = "", limit: int = Query(200, ge=1, le=MAX_PAGE)
) -> Response:
    async def build() -> Response:
        rows = await series_page(shared, q, limit, 0)
        return page(shared, request, "series.html", nav="series", **rows)

    return await rendered(shared, request, build)


@router.get("/series/{key:path}")
async def page_series_detail(shared: Shared, request: Request, key: str) -> Response:
    async def build() -> Response:
        detail = await series_detail(shared, key)
        return page(shared, request, "series_detail.html", nav="series", **detail)

    return await rendered(shared, request, build)


@router.get("/thresholds")
async def page_thresholds(shared: Shared, request: Request) -> Response:
    view = await threshold_view(shared)
    return page(shared, request, "thresholds.html", nav="thresholds", **view)
