"""``shelfcast retrain``: submit one wave by hand and follow it to the end with a progress bar."""

import sys
import time
from typing import Any

from shelfcast.errors import ShelfcastError
from shelfcast.settings import Settings

__all__ = ["all_series", "follow_wave", "parse_series", "run_wave"]


def parse_series(values: list[str]) -> list[tuple[str, str]]:
    """``STORE|ITEM`` strings as pairs; a message says what to type when one is malformed."""
    out = []
    for value in values:
        store, sep, item = value.partition("|")
        if not sep or not store or not item or "|" in item:
            raise ShelfcastError(
                f"--series {value!r}: write it as STORE|ITEM, e.g. --series '1|7'."
            )
        out.append((store, item))
    return out


def all_series(settings: Settings) -> list[tuple[str, str, float]]:
    """Every series in ``series_state``, with its new events as priority.

    No stored-event count: a wave asked for by hand lifts poison like a force does, when
    ``daily_sales`` changed since the series failed."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = str(settings.delta_dir / "series_state")
    try:
        rows = DeltaTable(uri).to_pyarrow_table(
            columns=["store_id", "item_id", "events_since_retrain"]
        )
    except TableNotFoundError as exc:
        raise ShelfcastError(
            f"No series_state table at {uri}: run 'shelfcast ingest' first, or check --data-dir."
        ) from exc
    return [
        (r["store_id"], r["item_id"], float(r["events_since_retrain"] or 0))
        for r in rows.to_pylist()
    ]


def follow_wave(actor: Any, wave_id: str, total: int, poll: float = 0.5) -> dict[str, Any]:
    """Show progress until the wave has no pending series; return its summary."""
    import ray
    from tqdm import tqdm  # type: ignore[import-untyped]

    shown = 0
    with tqdm(total=total, unit="series", file=sys.stderr, disable=total == 0) as bar:
        while True:
            summary: dict[str, Any] = ray.get(actor.wave.remote(wave_id))
            finished = summary["done"] + summary["failed"] + summary["moved"]
            bar.update(finished - shown)
            shown = finished
            bar.set_postfix(failed=summary["failed"], refresh=False)
            if summary["finished_at"] is not None:
                return summary
            time.sleep(poll)


def run_wave(settings: Settings, series: list[tuple[Any, ...]], cold: bool) -> dict[str, Any]:
    """Submit ``series`` at the latest ``daily_sales`` version and wait for the wave."""
    import ray

    from retrain.cluster import coordinator, daily_version

    version = daily_version(settings)
    actor = coordinator(settings)
    began = time.monotonic()
    submitted: dict[str, Any] = ray.get(actor.submit.remote(series, version, cold))
    summary = follow_wave(actor, submitted["wave_id"], submitted["total"])
    status: dict[str, Any] = ray.get(actor.status.remote())
    keys = {f"{s[0]}|{s[1]}" for s in series}
    summary["seconds"] = time.monotonic() - began
    summary["version"] = version
    summary["errors"] = {k: v["error"] for k, v in status["poisoned"].items() if k in keys}
    return summary
