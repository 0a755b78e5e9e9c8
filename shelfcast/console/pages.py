"""The console's HTML pages, rendered on the server from the API's own payloads."""

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response

from shelfcast.console.api import MAX_PAGE, health, series_page, threshold_view
from shelfcast.console.data import waves_view
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


@router.get("/static/plotly.min.js")
def plotly_js() -> Response:
    return FileResponse(_plotly_js(), media_type="text/javascript")


@router.get("/")
async def page_health(shared: Shared, request: Request) -> Response:
    return page(shared, request, "health.html", nav="health", **await health(shared))


@router.get("/queue")
async def page_queue(shared: Shared, request: Request) -> Response:
    current = dict(await shared.status())
    coordinator = dict(current.get("coordinator", {}))
    if "waves" in coordinator:
        coordinator["waves"] = waves_view(coordinator["waves"])
    current["coordinator"] = coordinator
    return page(shared, request, "queue.html", nav="queue", status=current)


@router.get("/series")
async def page_series(
    shared: Shared, request: Request, q: str = "", limit: int = Query(200, ge=1, le=MAX_PAGE)
) -> Response:
    rows = await series_page(shared, q, limit, 0)
    return page(shared, request, "series.html", nav="series", **rows)


@router.get("/series/{key:path}")
async def page_series_detail(shared: Shared, request: Request, key: str) -> Response:
    detail = await shared.pool.get(("detail", key), lambda: shared.data.series_detail(key))
    return page(shared, request, "series_detail.html", nav="series", **detail)


@router.get("/thresholds")
async def page_thresholds(shared: Shared, request: Request) -> Response:
    view = await threshold_view(shared)
    return page(shared, request, "thresholds.html", nav="thresholds", **view)
