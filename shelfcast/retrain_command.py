"""``shelfcast retrain``: submit one wave by hand and follow it to the end with a progress bar."""

import sys
import time
import uuid
from collections import Counter
from typing import Any

from contracts.errors import SeriesKeyError
from contracts.forecast import parse_model_version
from contracts.series import parse_series_key, series_key
from retrain.config import RetrainConfig
from retrain.errors import RetrainError
from shelfcast.errors import ShelfcastError
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings

__all__ = ["all_series", "chosen_series", "follow_wave", "parse_series", "run_wave"]


def parse_series(values: list[str]) -> list[tuple[str, str]]:
    """``STORE|ITEM`` strings as pairs; a message says what to type when one is malformed."""
    out = []
    for value in values:
        try:
            out.append(parse_series_key(value))
        except SeriesKeyError:
            raise ShelfcastError(
                f"--series {value!r}: write it as STORE|ITEM, e.g. --series '1|7'."
            ) from None
    return out


def _states(settings: Settings) -> list[dict[str, Any]]:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = str(settings.delta_dir / "series_state")
    try:
        rows = DeltaTable(uri).to_pyarrow_table(
            columns=["store_id", "item_id", "events_since_retrain", "model_version"]
        )
    except TableNotFoundError as exc:
        raise ShelfcastError(
            f"No series_state table at {uri}: run 'shelfcast ingest' first, or check --data-dir."
        ) from exc
    out: list[dict[str, Any]] = rows.to_pylist()
    return out


def all_series(settings: Settings) -> list[tuple[Any, ...]]:
    """Every series in ``series_state``, as a submission: its new events as priority, and
    the model version it last served (its next forecast's is higher, whatever its study
    holds).

    No stored-event count: a wave asked for by hand lifts poison like a force does, when
    ``daily_sales`` changed since the series failed."""
    return [
        (
            r["store_id"],
            r["item_id"],
            float(r["events_since_retrain"] or 0),
            None,
            None,
            parse_model_version(r["model_version"]),
        )
        for r in _states(settings)
    ]


def chosen_series(settings: Settings, pairs: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    """``pairs`` as a submission, each with the model version it last served, if any (a
    series not in ``series_state`` yet has none)."""
    try:
        served = {
            (str(r["store_id"]), str(r["item_id"])): parse_model_version(r["model_version"])
            for r in _states(settings)
        }
    except ShelfcastError:
        served = {}
    return [(store, item, 0.0, None, None, served.get((store, item))) for store, item in pairs]


def follow_wave(actor: Any, wave_id: str, total: int, poll: float = 0.5) -> dict[str, Any]:
    """Show progress until the wave has no pending series; return its summary (one actor,
    or one per shard)."""
    import ray
    from tqdm import tqdm  # type: ignore[import-untyped]

    actors = actor if isinstance(actor, list) else [actor]
    shown = 0
    with tqdm(total=total, unit="series", file=sys.stderr, disable=total == 0) as bar:
        while True:
            parts: list[dict[str, Any]] = ray.get([a.wave.remote(wave_id) for a in actors])
            summary = _combine(parts)
            finished = summary["done"] + summary["failed"] + summary["moved"]
            bar.update(finished - shown)
            shown = finished
            bar.set_postfix(failed=summary["failed"], refresh=False)
            if summary["finished_at"] is not None:
                return summary
            time.sleep(poll)


_COUNTS = ("total", "pending", "done", "failed", "skipped", "moved")


def _combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several shards' (or incarnations') summaries of one wave as one."""
    out: dict[str, Any] = {"wave_id": parts[0]["wave_id"]}
    for name in _COUNTS:
        out[name] = sum(int(p[name]) for p in parts)
    methods: Counter[str] = Counter()
    for p in parts:
        methods.update(p.get("methods", {}))
    out["methods"] = dict(methods)
    out["started_at"] = min(p["started_at"] for p in parts)
    ends = [p["finished_at"] for p in parts]
    out["finished_at"] = None if None in ends else max(ends)
    return out


class _Shard:
    """One shard's part of a wave, followed across the loss of its coordinator."""

    def __init__(self, shard: int, actor: Any, series: list[tuple[Any, ...]]) -> None:
        self.shard = shard
        self.actor = actor
        self.series = {series_key(s[0], s[1]): s for s in series}
        self.finished: set[str] = set()
        self.since = 0
        self.before: list[dict[str, Any]] = []  # the last summaries of lost incarnations
        self.last: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        return _combine([*self.before, *([self.last] if self.last else [])])


def run_wave(settings: Settings, series: list[tuple[Any, ...]], cold: bool) -> dict[str, Any]:
    """Submit ``series`` at the latest ``daily_sales`` version and wait for the wave.

    A coordinator lost mid-wave (its node died) is waited for (Ray restarts it, or the next
    lookup creates it): its unfinished series are submitted to it again, said in one line."""
    from tqdm import tqdm

    from retrain.cluster.client import coordinators, daily_version
    from retrain.cluster.shards import split

    config = retrain_config(settings)
    version = daily_version(config)
    actors = coordinators(config)
    began = time.monotonic()
    wave_id = uuid.uuid4().hex[:12]
    shards = [
        _Shard(n, actor, part)
        for n, (actor, part) in enumerate(zip(actors, split(series, len(actors)), strict=True))
    ]
    for shard in shards:
        if shard.series:
            try:
                _submit(shard, list(shard.series.values()), version, cold, wave_id)
            except _Lost as exc:
                raise ShelfcastError(
                    f"The retrain coordinator did not take the wave ({exc}). Check the Ray "
                    "cluster at SHELFCAST_RAY_ADDRESS ('ray status') and run the command again."
                ) from None
    total = len({series_key(s[0], s[1]) for s in series})
    shown = 0
    with tqdm(total=total, unit="series", file=sys.stderr, disable=total == 0) as bar:
        while True:
            for shard in shards:
                if shard.series and not _finished(shard.last):
                    _poll(config, shard, version, cold, wave_id, bar)
            summary = _combine([s.summary() for s in shards if s.series])
            finished = summary["done"] + summary["failed"] + summary["moved"]
            bar.update(finished - shown)
            shown = finished
            bar.set_postfix(failed=summary["failed"], refresh=False)
            if all(_finished(s.last) for s in shards if s.series):
                break
            time.sleep(0.5)
    poisoned: dict[str, Any] = {}
    for shard in shards:
        if shard.series:
            try:
                poisoned.update(_ask(shard.actor.status.remote(), "status")["poisoned"])
            except _Lost:
                pass  # the errors are details: the counts are known
    keys = {series_key(s[0], s[1]) for s in series}
    summary["seconds"] = time.monotonic() - began
    summary["version"] = version
    summary["errors"] = {k: v["error"] for k, v in poisoned.items() if k in keys}
    return summary


def _finished(summary: dict[str, Any] | None) -> bool:
    return summary is not None and summary["finished_at"] is not None


def _ask(ref: Any, what: str, timeout: float = 60.0) -> Any:
    import ray

    try:
        return ray.get(ref, timeout=timeout)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
        raise _Lost(f"{type(exc).__name__} on {what}") from exc


class _Lost(Exception):
    """The coordinator did not answer (dead, restarting, or wedged)."""


def _submit(
    shard: _Shard, series: list[tuple[Any, ...]], version: int, cold: bool, wave_id: str
) -> None:
    shard.last = _ask(shard.actor.submit.remote(series, version, cold, wave_id), "submit")


def _reconnect(config: RetrainConfig, shard: int, timeout: float) -> Any:
    """The shard's coordinator once it answers again (Ray restarting it, or created anew)."""
    from retrain.cluster.client import coordinator

    deadline = time.monotonic() + timeout
    while True:
        try:
            return coordinator(config, timeout=min(10.0, timeout), shard=shard)
        except RetrainError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _poll(
    config: RetrainConfig,
    shard: _Shard,
    version: int,
    cold: bool,
    wave_id: str,
    bar: Any,
    timeout: float = 120.0,
) -> None:
    """One look at the shard's wave; if its coordinator was lost, bring the wave back."""
    try:
        found = _ask(shard.actor.wave.remote(wave_id, shard.since), "wave")
        if found is None:
            raise _Lost("it no longer knows the wave (it was restarted)")
    except _Lost as exc:
        reason = str(exc)
    else:
        shard.finished.update(found["finished_keys"])
        shard.since += len(found["finished_keys"])
        shard.last = found
        return
    # Lost: keep what it had finished, and give the rest to its successor.
    last = shard.last
    if last is not None:
        # Moved or skipped series are not finished: they go again with the rest.
        done = {"total": last["done"] + last["failed"], "pending": 0, "moved": 0, "skipped": 0}
        shard.before.append({**last, **done, "finished_at": time.time()})
        shard.last = None
    left = [s for key, s in shard.series.items() if key not in shard.finished]
    try:
        shard.actor = _reconnect(config, shard.shard, timeout)
        shard.since = 0
        if left:
            _submit(shard, left, version, cold, wave_id)
    except (RetrainError, _Lost) as exc:
        raise ShelfcastError(
            f"The retrain coordinator was lost mid-wave ({reason}) and did not come back: "
            f"{exc}. {len(left)} of {len(shard.series)} series have no forecast from this "
            "wave; check the Ray cluster ('ray status') and run the command again."
        ) from None
    if not left:
        shard.last = {**shard.before.pop(), "finished_at": time.time()}
    bar.write(
        f"shelfcast: the retrain coordinator was lost mid-wave ({reason}); it is back, and "
        f"the {len(left)} series it had not finished were submitted to it again",
        file=sys.stderr,
    )
