"""SASL/SCRAM end to end: the embedded Kafka with a SCRAM listener; both ingest sources read
through it, and the dead-letter and forecast producers write through it."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException
from deltalake import DeltaTable

from contracts.forecast import Forecast
from retrain.stores.publish import ForecastPublisher
from shelfcast.embedded import free_port, start_broker, stop_process
from shelfcast.ingest_config import ingest_config, source_config
from shelfcast.kafka import client_config, ensure_topics, producer_config
from shelfcast.settings import Settings, load_settings
from streaming.dead_letters import DeadLetterTopic
from streaming.query import build_pipeline, start_query, stop_gracefully
from tests.support.events import sale
from tests.support.tables import stored_ids
from tests.support.topics import read_topic
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

# Quotes, a backslash, a slash, a space: what a JAAS line or a URL would mangle.
PASSWORD = 'p"a\\ss w0rd/=' + uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """An embedded Kafka whose client listener takes SASL_PLAINTEXT with SCRAM-SHA-512."""
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("sasl"),
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="shelfcast",
        kafka_sasl_password=PASSWORD,
    )
    proc = start_broker(settings)
    try:
        yield settings
    finally:
        stop_process(proc.pid)


def topics(settings: Settings) -> Settings:
    tag = uuid.uuid4().hex[:8]
    named = settings.model_copy(
        update={
            "topic_pos_sales": f"pos-{tag}",
            "topic_pos_plans": f"plans-{tag}",
            "topic_pos_stores": f"stores-{tag}",
            "topic_dlq": f"dlq-{tag}",
            "topic_forecasts": f"fc-{tag}",
            "data_dir": settings.data_dir / tag,
        }
    )
    ensure_topics(named)
    return named


def test_the_listener_refuses_clients_without_the_right_password(secure: Settings) -> None:
    for config in (
        {"bootstrap.servers": secure.bootstrap_servers},
        {**client_config(secure), "sasl.password": "wrong"},
    ):
        consumer = Consumer({**config, "group.id": "x"})
        with pytest.raises(KafkaException):
            consumer.list_topics(timeout=3)
        consumer.close()


@pytest.mark.parametrize("source", ["kafka", "python"])
def test_ingest_and_publish_through_scram(spark: Any, secure: Settings, source: str) -> None:
    settings = topics(secure).model_copy(
        update={"ingest_source": source, "ingest_trigger_seconds": 0.5}
    )
    from confluent_kafka import Producer

    producer = Producer(producer_config(settings))
    for i in range(20):
        producer.produce(settings.topic_pos_sales, json.dumps(sale(f"s{i}")).encode())
    producer.produce(settings.topic_pos_sales, b"not json")  # goes to the dead-letter topic
    assert producer.flush(30) == 0
    pipeline = build_pipeline(ingest_config(settings))
    query = start_query(spark, ingest_config(settings), pipeline)
    try:
        wait_for(lambda: len(stored_ids(settings)) == 20, 90, "20 events read through SASL")
        assert len(read_topic(settings, settings.topic_dlq, 1, timeout=30)) == 1
    finally:
        stop_gracefully(query)
        # Spark's callback keeps the pipeline for the session's life: its producer would
        # call this module's broker, stopped after it, to the end of the run.
        if isinstance(pipeline.dead_letters, DeadLetterTopic):
            pipeline.dead_letters.close()
    assert DeltaTable(str(settings.delta_dir / "quarantine")).to_pyarrow_table().num_rows == 1

    publisher = ForecastPublisher(producer_config(settings), settings.topic_forecasts)
    forecast = Forecast(
        store_id="S1",
        item_id="I1",
        generated_at=datetime.now(UTC),
        model_version=1,
        mlflow_run_id="run",
        method="seasonal_naive",
        data_through=date(2024, 3, 4),
        horizon=1,
        points=[{"date": date(2024, 3, 5), "yhat": 1.0, "yhat_lower": 0.0, "yhat_upper": 2.0}],
    )
    publisher.publish([forecast])
    publisher.close()
    got = read_topic(settings, settings.topic_forecasts, 1, timeout=30)
    assert [json.loads(m.value())["store_id"] for m in got] == ["S1"]


def test_the_password_is_in_no_repr_file_or_command_line(secure: Settings) -> None:
    assert PASSWORD not in repr(secure)
    assert PASSWORD not in repr(source_config(secure))
    for path in Path(secure.data_dir).rglob("*"):
        if path.is_file() and path.suffix in (".properties", ".log", ".pid", ".json", ""):
            assert PASSWORD.encode() not in path.read_bytes(), path
    for pid_file in (secure.run_dir).glob("*.pid"):
        cmdline = Path(f"/proc/{pid_file.read_text().split()[0]}/cmdline").read_bytes()
        assert PASSWORD.encode() not in cmdline


def test_each_client_gets_the_security_settings_under_its_own_names(tmp_path: Path) -> None:
    from shelfcast.kafka import java_client_options

    settings = load_settings(
        data_dir=tmp_path,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="pos",
        kafka_sasl_password=PASSWORD,
        kafka_ssl_ca_location=tmp_path / "ca.pem",
    )
    librdkafka = client_config(settings)
    assert librdkafka["sasl.password"] == PASSWORD
    assert librdkafka["ssl.ca.location"] == str(tmp_path / "ca.pem")
    java = java_client_options(settings)
    assert java["security.protocol"] == "SASL_SSL" and java["sasl.mechanism"] == "SCRAM-SHA-512"
    assert java["ssl.truststore.type"] == "PEM"
    assert java["ssl.truststore.location"] == str(tmp_path / "ca.pem")
    jaas = java["sasl.jaas.config"]
    assert jaas.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required ")
    # The password's quote and backslash are escaped inside the JAAS string.
    assert 'password="p\\"a\\\\ss w0rd/=' in jaas and jaas.endswith('";')
    assert not any(k.startswith(("sasl.password", "ssl.ca")) for k in java)
