"""The console's FastAPI app: HTML pages and the JSON API they share (``/api/...``).

Pages are rendered on the server from the same functions as the API; charts are drawn by
plotly.js, served from the plotly package's own copy (nothing loads from the internet).
Handlers are plain functions: FastAPI runs them on its thread pool, off the event loop.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware

from contracts.series import parse_series_key
from shelfcast.console.access import ConsoleAccessError, check_write, is_loopback
from shelfcast.console.data import (
    SERIES_COLUMNS,
    TableReader,
    chart_data,
    events_per_second,
    model_history,
    quarantine_summary,
    series_table,
    waves_view,
)
from shelfcast.errors import ShelfcastError
from shelfcast.forecast_chart import forecast_figure
from shelfcast.settings import Settings
from streaming.errors import StreamingError
from streaming.thresholds import ThresholdStore
from streaming.trigger import Thresholds

__all__ = ["create_app"]

_HERE = Path(__file__).parent


class ThresholdChange(BaseModel):
    """``PUT /api/thresholds``: KEY -> VALUE as typed (``force`` a comma-separated list)."""

    changes: dict[str, str | int | float | None]


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """Dates and times as ISO text, as the API sends them."""
    out: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return out


def create_app(settings: Settings, status: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """The console for ``settings``; ``status`` builds ``/api/status`` (default:
    ``shelfcast.status.gather_status``, the payload of ``shelfcast status --json``)."""
    if status is None:
        from shelfcast.status import gather_status

        def status() -> dict[str, Any]:
            return gather_status(settings)

    read_status = status
    reader = TableReader(settings.delta_dir)
    thresholds = ThresholdStore(settings.data_dir)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    writable_without_token = settings.console_token is None and is_loopback(settings.console_host)

    app = FastAPI(
        title="Shelfcast console",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    if is_loopback(settings.console_host):
        # A page on another site may not reach the console through a name it controls.
        app.add_middleware(
            TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"]
        )

    @app.exception_handler(ConsoleAccessError)
    def _refused(_request: Request, exc: ConsoleAccessError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ShelfcastError)
    @app.exception_handler(StreamingError)
    def _bad(_request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def page(request: Request, name: str, **context: Any) -> Response:
        return templates.TemplateResponse(
            request,
            name,
            {
                "writable_without_token": writable_without_token,
                "needs_token": settings.console_token is not None,
                **context,
            },
        )

    # -- data -----------------------------------------------------------------------------

    def full_status() -> dict[str, Any]:
        return _jsonable(read_status())

    def health() -> dict[str, Any]:
        current = full_status()
        batches = current.get("service", {}).get("recent_batches", [])
        quarantined = reader.rows(
            "quarantine", ["reason", "quarantined_at", "source_partition", "source_offset"]
        )
        return {
            "status": current,
            "batches": list(reversed(batches)),
            "events_per_second": events_per_second(batches, datetime.now(UTC)),
            "quarantine": _jsonable(quarantine_summary(quarantined)),
            "topic": settings.topic_pos_sales,
        }

    def series_list(q: str, limit: int, offset: int) -> dict[str, Any]:
        rows = reader.rows("series_state", SERIES_COLUMNS)
        return _jsonable(series_table(rows, q, limit, offset))

    def series_detail(key: str) -> dict[str, Any]:
        try:
            store_id, item_id = parse_series_key(key)
        except ValueError as exc:
            raise ShelfcastError(str(exc)) from exc
        state = reader.series(store_id, item_id, "series_state")
        forecasts = reader.series(store_id, item_id, "forecasts")
        row = state[0] if state else {}
        family = row.get("family")
        chart = chart_data(key, forecasts, reader.series(store_id, item_id, "daily_sales"), family)
        figure = json.loads(forecast_figure(chart).to_json()) if chart is not None else None
        return _jsonable(
            {
                "key": key,
                "state": row or None,
                "forecast": None
                if chart is None
                else {
                    "model_version": chart.model_version,
                    "method": chart.method,
                    "family": chart.family,
                    "data_through": chart.data_through,
                    "points": [
                        {"day": d, "yhat": y, "yhat_lower": lo, "yhat_upper": hi}
                        for d, y, lo, hi in chart.points
                    ],
                },
                "history": [] if chart is None else [[d, u] for d, u in chart.history],
                "models": model_history(forecasts, reader.series(store_id, item_id, "drift")),
                "figure": figure,
            }
        )

    def threshold_view() -> dict[str, Any]:
        return {
            "values": thresholds.load().model_dump(mode="json"),
            "descriptions": {k: f.description for k, f in Thresholds.model_fields.items()},
            "history": list(reversed(thresholds.history(limit=100))),
        }

    def authorise(request: Request) -> str:
        check_write(
            settings.console_host, settings.console_token, request.headers.get("authorization")
        )
        if not request.headers.get("content-type", "").startswith("application/json"):
            # A form on another site cannot send JSON without a preflight the console refuses.
            raise ConsoleAccessError("Send changes as JSON (Content-Type: application/json).", 415)
        client = request.client.host if request.client else "unknown"
        return f"console {client}"

    # -- JSON API -------------------------------------------------------------------------

    @app.get("/api/status")
    def api_status() -> dict[str, Any]:
        """What ``shelfcast status --json`` prints."""
        return full_status()

    @app.get("/api/health")
    def api_health() -> dict[str, Any]:
        return health()

    @app.get("/api/series")
    def api_series(
        q: str = "", limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0)
    ) -> dict[str, Any]:
        return series_list(q, limit, offset)

    @app.get("/api/series/{key:path}")
    def api_series_detail(key: str) -> dict[str, Any]:
        return series_detail(key)

    @app.get("/api/thresholds")
    def api_thresholds() -> dict[str, Any]:
        return threshold_view()

    @app.put("/api/thresholds")
    def api_set_thresholds(change: ThresholdChange, request: Request) -> dict[str, Any]:
        who = authorise(request)
        text = {k: "" if v is None else str(v) for k, v in change.changes.items()}
        thresholds.set(text, who=who)
        return threshold_view()

    @app.post("/api/thresholds/reset")
    def api_reset_thresholds(request: Request) -> dict[str, Any]:
        thresholds.reset(who=authorise(request))
        return threshold_view()

    # -- pages ----------------------------------------------------------------------------

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return FileResponse(_plotly_js(), media_type="text/javascript")

    @app.get("/", include_in_schema=False)
    def page_health(request: Request) -> Response:
        return page(request, "health.html", nav="health", **health())

    @app.get("/queue", include_in_schema=False)
    def page_queue(request: Request) -> Response:
        current = full_status()
        coordinator = current.get("coordinator", {})
        if "waves" in coordinator:
            coordinator["waves"] = waves_view(coordinator["waves"])
        return page(request, "queue.html", nav="queue", status=current)

    @app.get("/series", include_in_schema=False)
    def page_series(
        request: Request, q: str = "", limit: int = Query(200, ge=1, le=10_000)
    ) -> Response:
        return page(request, "series.html", nav="series", **series_list(q, limit, 0))

    @app.get("/series/{key:path}", include_in_schema=False)
    def page_series_detail(request: Request, key: str) -> Response:
        return page(request, "series_detail.html", nav="series", **series_detail(key))

    @app.get("/thresholds", include_in_schema=False)
    def page_thresholds(request: Request) -> Response:
        return page(request, "thresholds.html", nav="thresholds", **threshold_view())

    # After the plotly route: a mount matches every path under it.
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    return app
