"""The Kafka seam: client configuration from settings, topic creation, error translation."""

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from shelfcast.errors import KafkaError
from shelfcast.settings import Settings

__all__ = ["client_config", "ensure_topics", "producer_config"]


def client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings shared by every client: address and security."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None and settings.kafka_sasl_password.get_secret_value():
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_location is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    return config


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """An idempotent producer: retries never duplicate or reorder within a partition."""
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        **extra,
    }


def ensure_topics(settings: Settings, timeout: float = 15.0) -> None:
    """Create the topics Shelfcast uses when they do not exist yet."""
    names = [settings.topic_pos_sales, settings.topic_dlq, settings.topic_forecasts]
    admin = AdminClient(client_config(settings))
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise KafkaError(
            f"Cannot reach Kafka at {settings.bootstrap_servers}: {exc.args[0]}. "
            "Start the embedded broker with 'shelfcast up', or set SHELFCAST_BOOTSTRAP_SERVERS."
        ) from exc
    missing = [
        NewTopic(name, settings.topic_partitions, settings.topic_replication)
        for name in names
        if name not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            raise KafkaError(
                f"Could not create topic {name!r}: {exc.args[0]}. "
                "Create it by hand or grant the client CREATE on the cluster."
            ) from exc
