"""The Kafka seam: client configuration from settings, topic creation, error translation."""

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from shelfcast.errors import KafkaError
from shelfcast.settings import Settings
from streaming.config import KafkaClient

__all__ = [
    "client_config",
    "ensure_scram_user",
    "ensure_topics",
    "java_client_options",
    "kafka_client",
    "producer_config",
]


def kafka_client(settings: Settings) -> KafkaClient:
    """The broker's address and credentials (the password stays a ``SecretStr``)."""
    return KafkaClient(
        bootstrap_servers=settings.bootstrap_servers,
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=settings.kafka_sasl_password,
        ssl_ca_location=settings.kafka_ssl_ca_location,
    )


def client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings shared by every client: address and security."""
    return kafka_client(settings).librdkafka()


def java_client_options(settings: Settings) -> dict[str, str]:
    """The same address and security for Java Kafka clients (Spark's source), under their
    own names: a JAAS line for SASL, a PEM trust store for the CA file."""
    return kafka_client(settings).java()


def ensure_scram_user(settings: Settings, bootstrap: str, timeout: float = 30.0) -> None:
    """Create or update the configured SASL/SCRAM user through ``bootstrap`` (an admin
    listener): the password travels over the admin API only."""
    user = settings.kafka_sasl_username
    password = settings.kafka_sasl_password
    if not user or password is None:
        raise KafkaError(
            "SASL needs a user: set SHELFCAST_KAFKA_SASL_USERNAME and "
            "SHELFCAST_KAFKA_SASL_PASSWORD (a secret file in SHELFCAST_SECRETS_DIR)."
        )
    mechanism = ScramMechanism[str(settings.kafka_sasl_mechanism).replace("-", "_")]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(mechanism, 8192), password.get_secret_value().encode()
    )
    try:
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout)
    except KafkaException as exc:
        raise KafkaError(
            f"Could not create the SCRAM user {user!r} on the embedded broker: {exc.args[0]}. "
            "See the broker log under <data dir>/run."
        ) from exc


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """An idempotent producer: retries never duplicate or reorder within a partition."""
    return kafka_client(settings).producer(**extra)


def ensure_topics(settings: Settings, timeout: float = 15.0) -> None:
    """Create the topics Shelfcast uses when they do not exist yet."""
    names = [
        settings.topic_pos_sales,
        settings.topic_pos_plans,
        settings.topic_pos_stores,
        settings.topic_dlq,
        settings.topic_forecasts,
    ]
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
