"""``shelfcast forecasts``: read the forecast topic readably, or plot one series."""

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from contracts import ContractError, Forecast, parse_forecast
from contracts.series import parse_series_key
from shelfcast.errors import ShelfcastError
from shelfcast.forecast_chart import ChartData, chart_title, forecast_figure
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
    return chart_title(f.key, f.model_version, f.method, f.family, f.data_through)


def plot_series(settings: Settings, key: str, out: Path, history_days: int = 120) -> Path:
    """The console's chart of the series (recent actuals, its latest forecast and the
    interval) as ``out``: ``.html`` (interactive, plotly.js inside, works offline) or an image
    (``.png``, ``.svg``, ``.pdf``: kaleido renders it with the machine's Chromium)."""
    from shelfcast.console.data import TableReader

    try:
        store_id, item_id = parse_series_key(key)
    except ValueError as exc:
        raise ShelfcastError(str(exc)) from exc
    latest = None
    for forecast in read_forecasts(settings, follow=False):
        if forecast.key == key and (
            latest is None or forecast.model_version > latest.model_version
        ):
            latest = forecast
    if latest is None:
        raise ShelfcastError(f"No forecast for {key} on {settings.topic_forecasts!r} yet.")
    daily = TableReader(settings.delta_dir).history(
        store_id, item_id, latest.data_through, history_days
    )
    figure = forecast_figure(
        ChartData(
            key=key,
            model_version=latest.model_version,
            method=latest.method,
            family=latest.family,
            data_through=latest.data_through,
            points=[(p.date, p.yhat, p.yhat_lower, p.yhat_upper) for p in latest.points],
            history=sorted((r["day"], r["units"]) for r in daily),
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".html", ".htm"):
        figure.write_html(out, include_plotlyjs=True, full_html=True)
        return out
    try:
        figure.write_image(out, width=1000, height=420)
    except Exception as exc:  # kaleido's errors have no common root
        raise ShelfcastError(
            f"Could not render {out.name} ({exc}). An image needs Chromium "
            "('apt-get install chromium', as scripts/setup does); or write the chart as "
            "HTML: --out forecast.html."
        ) from exc
    return out
