"""A throwaway embedded stack for benchmarks: Apache Kafka and a Ray head on free loopback ports."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from retrain.cluster.client import loopback_ray_env
from retrain.kernel.plans import Plan, StoreInfo
from shelfcast.embedded import free_port, start_broker, start_ray, stop_process
from shelfcast.kafka import ensure_topics
from shelfcast.settings import Settings, load_settings
from streaming.aggregate import update_series_state
from streaming.schemas import DAILY_SALES
from streaming.tables import TableStore

__all__ = ["embedded_stack", "write_daily_frame", "write_series_state"]


@contextmanager
def embedded_stack(data_dir: Path, **overrides: Any) -> Iterator[Settings]:
    """Settings on a fresh broker and Ray head; both stopped by pid on exit."""
    loopback_ray_env()
    settings = load_settings(
        data_dir=data_dir,
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        ray_address=f"127.0.0.1:{free_port()}",
        **overrides,
    )
    broker = start_broker(settings)
    ray_head = None
    try:
        ray_head = start_ray(settings)
        ensure_topics(settings)
        yield settings
    finally:
        import ray

        ray.shutdown()
        if ray_head is not None:
            stop_process(ray_head.pid, timeout=3.0)
        stop_process(broker.pid)


def write_daily_frame(settings: Settings, frame: pd.DataFrame, batch_id: int) -> int:
    """``date, store, item, sales`` rows into ``daily_sales`` as the ingest would; new version."""
    store = TableStore(settings.delta_dir)
    store.ensure()
    n = len(frame)
    table = pa.table(
        {
            "store_id": frame["store"].astype(str).to_numpy(),
            "item_id": frame["item"].astype(str).to_numpy(),
            "day": pa.array(frame["date"].dt.date.to_numpy(), pa.date32()),
            "units": frame["sales"].astype(float).to_numpy(),
            "revenue": [0.0] * n,
            "returns": [0.0] * n,
            "event_count": [1] * n,
            "updated_batch_id": [batch_id] * n,
        },
        schema=DAILY_SALES,
    )
    store.add_daily_once(table, "bench", batch_id)
    return int(store.table("daily_sales").version())


def write_series_state(settings: Settings, keys: list[tuple[str, str]], batch_id: int) -> None:
    """One ``series_state`` row per series, as the ingest leaves them (for ``--all``)."""
    store = TableStore(settings.delta_dir)
    store.ensure()
    now = datetime.now(UTC)
    n = len(keys)
    events = pa.table(
        {
            "store_id": [s for s, _ in keys],
            "item_id": [i for _, i in keys],
            "sale_date": pa.array([date.today()] * n, pa.date32()),
            "sold_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "kafka_timestamp": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    rows = update_series_state(store.series_rows(keys), events, batch_id, now)
    store.upsert_series_once(rows, "bench", batch_id)


def write_plans(
    settings: Settings, plans: dict[str, list[Plan]], stores: dict[str, StoreInfo], batch_id: int
) -> None:
    """Plans and store records into the ``plans`` and ``stores`` tables, as the stream keeps
    them (one row per plan and per store, revision 1)."""
    from streaming.schemas import PLANS, STORES

    store = TableStore(settings.delta_dir)
    store.ensure()
    now = datetime.now(UTC)
    rows = [
        {
            "plan_id": f"{p.kind}-{store_id}-{p.item_id}-{p.start}",
            "revision": 1,
            "cancelled": False,
            "store_id": store_id,
            "item_id": p.item_id,
            "start_date": p.start,
            "end_date": p.end,
            "kind": p.kind,
            "depth": p.depth,
            "unit_price": p.unit_price,
            "published_at": now,
        }
        for store_id, found in plans.items()
        for p in found
    ]
    if rows:
        store.append_once("plans", pa.Table.from_pylist(rows, schema=PLANS), "bench", batch_id)
    records = [
        {
            "store_id": info.store_id,
            "revision": 1,
            "country": info.country,
            "subdivision": info.subdivision,
            "open_weekdays": list(info.open_weekdays or ()),
            "store_type": info.store_type,
            "assortment": info.assortment,
            "attributes_json": None,
            "published_at": now,
        }
        for info in stores.values()
    ]
    if records:
        table = pa.Table.from_pylist(records, schema=STORES)
        store.append_once("stores", table, "bench", batch_id + 1)
