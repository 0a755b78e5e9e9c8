"""Daily series as numbers, and ``daily_sales`` written from them as the ingest would."""

from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from shelfcast.settings import Settings

__all__ = ["demand", "write_daily"]


def demand(days: int, level: float = 20.0, seed: int = 0) -> np.ndarray:
    """A real-shaped daily series: weekly and yearly cycle, trend, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    weekly = 1 + 0.3 * np.sin(2 * np.pi * t / 7)
    yearly = 1 + 0.2 * np.sin(2 * np.pi * t / 365.25)
    return np.round(rng.poisson(level * weekly * yearly * (1 + t / 2000))).astype(float)


def write_daily(
    settings: Settings, series: dict[tuple[str, str], np.ndarray], start: date, batch_id: int = 0
) -> int:
    """Put daily units per series into ``daily_sales`` (as the ingest would); its new version."""

    from streaming.schemas import DAILY_SALES
    from streaming.tables import TableStore

    store = TableStore(settings.delta_dir)
    store.ensure()
    rows: dict[str, list[Any]] = {
        k: [] for k in ("store_id", "item_id", "day", "units", "revenue", "returns")
    }
    for (store_id, item_id), values in series.items():
        for k, value in enumerate(values):
            rows["store_id"].append(store_id)
            rows["item_id"].append(item_id)
            rows["day"].append(start + timedelta(days=k))
            rows["units"].append(float(value))
            rows["revenue"].append(0.0)
            rows["returns"].append(0.0)
    n = len(rows["day"])
    table = pa.table(
        {**rows, "event_count": [1] * n, "updated_batch_id": [batch_id] * n},
        schema=DAILY_SALES,
    )
    store.add_daily_once(table, "tests", batch_id)
    return int(store.table("daily_sales").version())
