"""A coordinator that starts afresh rebuilds its queue from series_state; a sharded queue keeps
one queue's guarantees per series. On the session's Ray head, broker and stores."""

import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from contracts import parse_forecast
from retrain.cluster.shards import coordinator_name, shard_of
from shelfcast.retrain_command import run_wave
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings
from streaming.schemas import SERIES_STATE
from streaming.tables import TableStore
from tests.support.retrain import START
from tests.support.series import demand, write_daily
from tests.support.topics import read_topic
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def mark_busy(
    settings: Settings, rows: list[tuple[str, str, str]], served: str | None = None
) -> None:
    """``series_state`` rows as a driver leaves them: ``(store, item, status)``, each having
    served model version ``served``."""
    blank = dict.fromkeys(SERIES_STATE.names)
    table = pa.Table.from_pylist(
        [
            {
                **blank,
                "store_id": s,
                "item_id": i,
                "status": status,
                "total_events": 100,
                "model_version": served,
            }
            for s, i, status in rows
        ],
        schema=SERIES_STATE,
    )
    assert TableStore(settings.delta_dir).upsert_series_once(table, "test", 0)


def test_a_coordinator_started_afresh_or_restarted_by_ray_resubmits_the_busy_series(
    retrain_settings: Callable[..., Settings],
) -> None:
    import ray

    from retrain.cluster.client import coordinator

    settings = retrain_settings()
    write_daily(settings, {("S1", "I1"): demand(120), ("S1", "I2"): demand(120, seed=3)}, START)
    # The driver had handed S1|I1 to a coordinator since lost; S1|I2 was done. Both had
    # served version 6 (their studies lost since): the next is higher.
    mark_busy(settings, [("S1", "I1", "queued"), ("S1", "I2", "done")], served="6")

    # Nothing submitted: its queue comes from series_state.
    actor = coordinator(retrain_config(settings))

    def done() -> list[dict[str, Any]]:
        try:
            news = ray.get(actor.peek_updates.remote(), timeout=10)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return []  # being restarted
        return [u for u in news if u["status"] == "done"]

    wait_for(lambda: bool(done()), 120)
    (first,) = done()
    assert first["item_id"] == "I1"

    # Lost anyway (its process dies): Ray starts it again, and it rebuilds the same way.
    ray.kill(actor, no_restart=False)
    wait_for(lambda: any(u["seq"] > first["seq"] for u in done()), 120)
    (second,) = done()
    assert second["item_id"] == "I1" and second["seq"] > first["seq"]  # never a reused number

    forecasts = read_topic(settings, settings.topic_forecasts, expect=2)
    assert sorted(
        (parse_forecast(m.value()).key, parse_forecast(m.value()).model_version) for m in forecasts
    ) == [("S1|I1", 7), ("S1|I1", 8)]


def test_two_shards_share_a_wave_and_the_service_side_client_sees_both(
    retrain_settings: Callable[..., Settings],
) -> None:
    import ray

    from retrain.cluster.client import CoordinatorClient

    settings = retrain_settings(ray_coordinator_shards=2)
    series = [(f"S{n}", "I1") for n in range(2)]
    assert {shard_of(f"{s}|{i}", 2) for s, i in series} == {0, 1}
    version = write_daily(settings, {k: demand(100, seed=n) for n, k in enumerate(series)}, START)
    client = CoordinatorClient(retrain_config(settings), timeout=10)
    try:
        summary = run_wave(settings, [(s, i, 0.0) for s, i in series], cold=False)
        assert (summary["done"], summary["failed"]) == (2, 0), summary["errors"]

        # The hand-off's calls: a series that cannot train is poisoned on its own shard, and
        # a resubmission at the same data is skipped there.
        client.submit([("S9", "missing", 1.0, 12), ("S0", "I1", 1.0, 200)], version)

        def news() -> list[dict[str, Any]]:
            return client.peek_updates()

        def counted() -> Counter[tuple[str, str]]:
            return Counter((u["item_id"], u["status"]) for u in news())

        # The first wave's two "done" are there already: wait for this call's own updates.
        wait_for(lambda: counted()[("I1", "done")] >= 3 and counted()[("missing", "poison")], 120)
        states = counted()
        assert states[("I1", "done")] == 3 and states[("missing", "poison")] == 1
        assert {u["shard"] for u in news()} == {0, 1}
        client.ack_updates(max(u["seq"] for u in news()))
        space = settings.ray_namespace
        actors = [ray.get_actor(coordinator_name(s), namespace=space) for s in (0, 1)]
        wait_for(lambda: all(ray.get(a.peek_updates.remote()) == [] for a in actors), 10)
        status = client.status()
        assert status["published"] == 3 and set(status["poisoned"]) == {"S9|missing"}

        per_series = Counter(
            parse_forecast(m.value()).key for m in read_topic(settings, settings.topic_forecasts, 3)
        )
        assert per_series == {"S0|I1": 2, "S1|I1": 1}
    finally:
        client.close()
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(coordinator_name(1), namespace=settings.ray_namespace))
