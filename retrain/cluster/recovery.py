"""What a coordinator that starts afresh owes: the series ``series_state`` shows as busy.

A coordinator lost with its queue (its node died, the Ray head was replaced) leaves series
marked ``queued`` or ``running`` by the driver. A new one submits them again at once, instead
of leaving them to wait for the trigger's ``busy_timeout_seconds``; coalescing makes a series
that is also handed over again harmless.
"""

import logging
from pathlib import Path

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from contracts.forecast import parse_model_version
from contracts.series import series_key
from retrain.cluster.queue import Request
from retrain.cluster.shards import shard_of

__all__ = ["busy_series"]

log = logging.getLogger("shelfcast.coordinator")

BUSY = ("queued", "running")
_COLUMNS = ["store_id", "item_id", "status", "total_events", "events_since_retrain"]
_SERVED = "model_version"  # the version of its last served forecast (a string column)


def busy_series(delta_dir: Path, shard: int = 0, shards: int = 1) -> tuple[list[Request], int]:
    """This shard's series marked busy, and the ``daily_sales`` version to retrain them at.

    ``([], -1)`` when there are no tables yet. Each request carries the series' stored events,
    so a series that fails again is poisoned on the data it has, and the version of its last
    served forecast: its next one's is higher, whatever its study kept."""
    try:
        state = DeltaTable(str(delta_dir / "series_state"))
        version = int(DeltaTable(str(delta_dir / "daily_sales")).version())
        rows = state.to_pyarrow_table(columns=[*_COLUMNS, _SERVED]).to_pylist()
    except TableNotFoundError:
        return [], -1
    except (DeltaError, OSError) as exc:
        log.warning(
            "cannot read series_state to rebuild the queue (%s); the trigger's "
            "busy timeout offers those series again",
            exc,
        )
        return [], -1
    out = [
        Request(
            str(r["store_id"]),
            str(r["item_id"]),
            float(r["events_since_retrain"] or 0),
            None if r["total_events"] is None else int(r["total_events"]),
            served=parse_model_version(r[_SERVED]),
        )
        for r in rows
        if r["status"] in BUSY
        and shard_of(series_key(str(r["store_id"]), str(r["item_id"])), shards) == shard
    ]
    return out, version
