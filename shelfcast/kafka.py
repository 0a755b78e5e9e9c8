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

__all__ = [
    "client_config",
    "ensure_scram_user",
    "ensure_topics",
    "java_client_options",
    "producer_config",
]

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


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


def _jaas_quote(value: str) -> str:
    # JAAS values are double-quoted strings with backslash escapes.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def java_client_options(settings: Settings) -> dict[str, str]:
    """The same address and security for Java Kafka clients (Spark's source), under their
    own names: a JAAS line for SASL, a PEM trust store for the CA file."""
    options = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        mechanism = settings.kafka_sasl_mechanism
        module = _LOGIN_MODULES.get(mechanism)
        if module is None:
            raise KafkaError(
                f"SASL mechanism {mechanism!r} has no Java login module here; use one of "
                f"{', '.join(_LOGIN_MODULES)} or SHELFCAST_INGEST_SOURCE=python."
            )
        password = settings.kafka_sasl_password
        options["sasl.mechanism"] = mechanism
        options["sasl.jaas.config"] = (
            f"{module} required username={_jaas_quote(settings.kafka_sasl_username or '')} "
            f"password={_jaas_quote(password.get_secret_value() if password else '')};"
        )
    if settings.kafka_ssl_ca_location is not None:
        options["ssl.truststore.type"] = "PEM"
        options["ssl.truststore.location"] = str(settings.kafka_ssl_ca_location)
    return options


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
