"""``shelfcast forecasts``: read the forecast topic readably, or plot one series."""

import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from contracts import ContractError, Forecast, parse_forecast
from shelfcast.errors import ShelfcastError
from shelfcast.settings import Settings

__all__ = ["format_forecast", "plot_series", "plot_title", "read_forecasts"]


def read_forecasts(settings: Settings, follow: bool, idle: float = 2.0) -> Iterator[Forecast]:
    """Every forecast on the topic from the start; with ``follow``, keep waiting for more."""
    from confluent_kafka import Consumer, TopicPartition

    from shelfcast.kafka import client_config

    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"shelfcast-view-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    topic = settings.topic_forecasts
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ShelfcastError(
                f"No topic {topic!r} at {settings.bootstrap_servers}; run 'shelfcast up'."
            )
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        quiet_since = time.monotonic()
        while follow or time.monotonic() - quiet_since < idle:
            batch = consumer.consume(200, 0.5)
            if batch:
                quiet_since = time.monotonic()
            for msg in batch:
                if msg.error() is not None:
                    continue
                try:
                    yield parse_forecast(msg.value() or b"")
                except ContractError as exc:
                    print(f"skipping a message that is not forecast v1: {exc}", file=sys.stderr)
    finally:
        consumer.close()


def format_forecast(f: Forecast, days: int = 7) -> str:
    head = ", ".join(f"{p.yhat:.1f}" for p in f.points[:days])
    mase = f"{f.validation_mase:.3f}" if f.validation_mase is not None else "-"
    return (
        f"{f.generated_at:%Y-%m-%d %H:%M:%S}  {f.key:<16} v{f.model_version:<4} "
        f"{f.method:<14} {f.family or '-':<7} {'warm' if f.warm else 'cold'}  "
        f"through {f.data_through}  "
        f"MASE {mase}  next {min(days, len(f.points))} days: {head}"
    )


def plot_title(f: Forecast) -> str:
    """The chart's title: the series, its model version, family and method, and its data."""
    family = {None: "family not recorded", "combo": "combo (a mean of families)"}.get(
        f.family, f.family
    )
    return (
        f"{f.key}: model v{f.model_version}, {family} ({f.method}), data through {f.data_through}"
    )


def plot_series(settings: Settings, key: str, out: Path, history_days: int = 120) -> Path:
    """PNG of the series' recent actuals, its latest forecast and the interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    store_id, _, item_id = key.partition("|")
    latest = None
    for forecast in read_forecasts(settings, follow=False):
        if forecast.key == key and (
            latest is None or forecast.model_version > latest.model_version
        ):
            latest = forecast
    if latest is None:
        raise ShelfcastError(f"No forecast for {key} on {settings.topic_forecasts!r} yet.")
    rows = DeltaTable(str(settings.delta_dir / "daily_sales")).to_pyarrow_table(
        columns=["item_id", "day", "units"], filters=[("store_id", "=", store_id)]
    )
    rows = rows.filter(pc.equal(rows.column("item_id").cast(pa.string()), item_id))
    start = latest.data_through - timedelta(days=history_days)
    history = sorted(
        (d, u)
        for d, u in zip(
            rows.column("day").to_pylist(), rows.column("units").to_pylist(), strict=True
        )
        if d > start
    )
    fig, ax = plt.subplots(figsize=(10, 4))
    if history:
        ax.plot(
            [d for d, _ in history], [u for _, u in history], color="black", lw=1, label="actual"
        )
    days: Any = [p.date for p in latest.points]
    ax.plot(days, [p.yhat for p in latest.points], color="tab:blue", label="forecast")
    ax.fill_between(
        days,
        [p.yhat_lower for p in latest.points],
        [p.yhat_upper for p in latest.points],
        color="tab:blue",
        alpha=0.2,
        label="interval",
    )
    ax.set_title(plot_title(latest))
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
