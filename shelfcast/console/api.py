"""The console's JSON API (``/api/...``): what the pages show, and threshold changes."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from shelfcast.console.data import series_table
from shelfcast.console.state import Console, console

__all__ = ["MAX_PAGE", "ResetRequest", "ThresholdChange", "router"]

MAX_PAGE = 1_000  # series rows in one answer

router = APIRouter(prefix="/api")
Shared = Annotated[Console, Depends(console)]


class ThresholdChange(BaseModel):
    """``PUT /api/thresholds``: KEY -> VALUE as typed (``force`` a comma-separated list), and
    the revision the sender read (a key changed since then is refused)."""

    changes: dict[str, str | int | float | None]
    revision: int | None = None


class ResetRequest(BaseModel):
    """``POST /api/thresholds/reset``: the revision the sender read, if it sends one."""

    revision: int | None = None


def _who(request: Request) -> str:
    return f"console {request.client.host if request.client else 'unknown'}"


async def series_page(shared: Console, q: str, limit: int, offset: int) -> dict[str, Any]:
    """One page of the series table: the table cached for all, the page cached per query."""
    table = await shared.pool.get("series_state", shared.data.series_state)
    return await shared.pool.get(
        ("series", q, limit, offset),
        lambda: series_table(table, q, limit, offset, shared.data.store_plans),
    )


async def health(shared: Console) -> dict[str, Any]:
    status = await shared.status()
    return await shared.pool.get("health", lambda: shared.data.health(status))


async def threshold_view(shared: Console) -> dict[str, Any]:
    # Not kept: a page reloaded after a change shows it.
    return await shared.pool.get("thresholds", shared.data.threshold_view, ttl=0)


@router.get("/status")
async def api_status(shared: Shared) -> dict[str, Any]:
    """What ``shelfcast status --json`` prints."""
    return await shared.status()


@router.get("/health")
async def api_health(shared: Shared) -> dict[str, Any]:
    return await health(shared)


@router.get("/series")
async def api_series(
    shared: Shared,
    q: str = "",
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    return await series_page(shared, q, limit, offset)


async def series_detail(shared: Console, key: str) -> dict[str, Any]:
    """One series' page: its state from the cached table, its forecasts, actuals and live
    errors read for that series alone."""
    table = await shared.pool.get("series_state", shared.data.series_state)
    return await shared.pool.get(("detail", key), lambda: shared.data.series_detail(key, table))


@router.get("/series/{key:path}")
async def api_series_detail(shared: Shared, key: str) -> dict[str, Any]:
    return await series_detail(shared, key)


@router.get("/thresholds")
async def api_thresholds(shared: Shared) -> dict[str, Any]:
    return await threshold_view(shared)


@router.put("/thresholds")
async def api_set_thresholds(
    shared: Shared, change: ThresholdChange, request: Request
) -> dict[str, Any]:
    text = {k: "" if v is None else str(v) for k, v in change.changes.items()}
    store, who = shared.data.thresholds, _who(request)
    await shared.pool.run(lambda: store.set(text, who=who, expect_revision=change.revision))
    return await threshold_view(shared)


@router.post("/thresholds/reset")
async def api_reset_thresholds(
    shared: Shared, request: Request, reset: ResetRequest | None = None
) -> dict[str, Any]:
    store, who = shared.data.thresholds, _who(request)
    revision = reset.revision if reset is not None else None
    await shared.pool.run(lambda: store.reset(who=who, expect_revision=revision))
    return await threshold_view(shared)
