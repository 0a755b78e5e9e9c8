"""The coordinator's sinks on real brokers: a hung MLflow never holds a forecast back, and a
forecast whose acknowledgement was lost is stored once, however long the broker stays away."""

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from contracts.forecast import Forecast
from retrain.cluster.recovery import busy_series
from retrain.cluster.sinks import Sinks
from retrain.config import PublishConfig
from retrain.errors import InfrastructureError
from shelfcast.kafka import producer_config
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings
from tests.support.kafka_proxy import broker_behind_proxy, hung_server
from tests.support.topics import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def forecast(item: str, version: int = 1) -> Forecast:
    return Forecast(
        store_id="S1",
        item_id=item,
        generated_at=datetime.now(UTC),
        model_version=version,
        mlflow_run_id="run",
        method="seasonal_naive",
        data_through=date(2024, 3, 4),
        horizon=1,
        points=[{"date": date(2024, 3, 5), "yhat": 1.0, "yhat_lower": 0.0, "yhat_upper": 2.0}],
    )


def test_a_hung_mlflow_holds_back_no_forecast_and_no_delta_read(
    make_settings: Callable[..., Settings],
) -> None:
    # One try per call (mlflow_retries=0): what waits on the hung server fails once it drops
    # the connection.
    with hung_server() as mlflow:
        settings = make_settings(
            mlflow_tracking_uri=f"http://127.0.0.1:{mlflow.port}", mlflow_retries=0
        )
        config = retrain_config(settings).coordinator

        async def scenario() -> None:
            sinks = Sinks(config)
            try:
                opening = asyncio.create_task(sinks.wave_run("w1"))  # waits on MLflow
                assert await asyncio.to_thread(mlflow.connected.wait, 60)
                assert not opening.done()
                notes: list[str] = []
                began = time.monotonic()
                await asyncio.wait_for(sinks.deliver(forecast("I1"), notes.append), 30)
                found = await asyncio.wait_for(sinks.read(busy_series, settings.delta_dir), 30)
                assert found == ([], -1) and time.monotonic() - began < 30
                assert not opening.done(), "MLflow answered: the test proves nothing"
                mlflow.drop()
                with pytest.raises(InfrastructureError):  # an outage: never the series'
                    await asyncio.wait_for(opening, 60)
            finally:
                sinks.close()

        asyncio.run(scenario())
    assert [m.key() for m in read_topic(settings, settings.topic_forecasts, 1)] == [b"S1|I1"]


def _stored(bootstrap: str, topic: str) -> list[bytes]:
    """The keys of every message on ``topic``, read straight from the broker."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        keys: list[bytes] = []
        idle = time.monotonic() + 5  # a fresh consumer's first fetch, on a busy machine
        while time.monotonic() < idle:
            for msg in consumer.consume(100, 0.2):
                if msg.error() is None:
                    keys.append(msg.key())
                    idle = time.monotonic() + 1
        return keys
    finally:
        consumer.close()


def test_a_forecast_whose_acknowledgement_was_lost_is_stored_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The broker stores the forecast, its answer is lost, then it stays unreachable longer
    than the producer's ``message.timeout.ms`` (3 s asked here). Before, that timed the
    message out and the coordinator produced it again: two copies."""
    with broker_behind_proxy(tmp_path / "broker") as broker:
        settings = make_settings(bootstrap_servers=broker.bootstrap)
        topic = settings.topic_forecasts
        producer = producer_config(
            settings, **{"message.timeout.ms": 3000, "reconnect.backoff.max.ms": 500}
        )
        config = retrain_config(settings).coordinator
        config = dataclasses.replace(config, publish=PublishConfig(topic, producer))

        async def scenario() -> list[str]:
            sinks = Sinks(config)
            notes: list[str] = []
            try:
                await asyncio.wait_for(sinks.deliver(forecast("I1"), notes.append), 60)
                broker.proxy.hold()
                sending = asyncio.create_task(sinks.deliver(forecast("I2"), notes.append))
                deadline = time.monotonic() + 30
                while b"S1|I2" not in await asyncio.to_thread(_stored, broker.direct, topic):
                    assert time.monotonic() < deadline, "the broker never stored it"
                broker.proxy.cut()
                await asyncio.sleep(8)  # down longer than message.timeout.ms
                assert not sending.done()
                broker.proxy.restore()
                await asyncio.wait_for(sending, 90)
            finally:
                sinks.close()
            return notes

        notes = asyncio.run(scenario())
        keys = _stored(broker.direct, topic)
    assert sorted(keys) == [b"S1|I1", b"S1|I2"], notes


def test_a_wave_table_goes_to_mlflow_in_parts_and_none_is_lost_while_mlflow_is_away(
    make_settings: Callable[..., Settings],
) -> None:
    from retrain.cluster.tables import PART_ROWS
    from retrain.stores.registry import Tracker

    settings = make_settings()
    config = retrain_config(settings).coordinator
    # Nothing listens there, and one try per call: MLflow is away at once.
    away = dataclasses.replace(
        config,
        task=dataclasses.replace(config.task, tracking_uri="http://127.0.0.1:9/", mlflow_retries=0),
    )
    total = 2 * PART_ROWS + 345
    tracker = Tracker(settings.tracking_uri, settings.mlflow_experiment)

    async def scenario() -> str:
        sinks = Sinks(config)
        try:
            run_id = await sinks.wave_run("w1")
            for n in range(PART_ROWS):
                sinks.add_row(run_id, {"series": f"S1|I{n}", "model_version": 1})
            deadline = time.monotonic() + 60
            while not await asyncio.to_thread(tracker.series_table, run_id):
                assert time.monotonic() < deadline, "a full part was never stored"
                await asyncio.sleep(0.2)
            sinks.reconfigure(away)
            for n in range(PART_ROWS, total):
                sinks.add_row(run_id, {"series": f"S1|I{n}", "model_version": 1})
            await sinks.finish_wave("w1", {"series": total})  # fails: kept open, rows kept
            assert sinks.open_waves == ["w1"]
            sinks.reconfigure(config)
            await sinks.finish_wave("w1", {"series": total})
            assert sinks.open_waves == []
        finally:
            sinks.close()
        return run_id

    run_id = asyncio.run(scenario())
    rows = tracker.series_table(run_id)
    assert [r["series"] for r in rows] == [f"S1|I{n}" for n in range(total)]
    assert tracker.client.get_run(run_id).data.metrics["series"] == total
