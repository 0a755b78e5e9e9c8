"""The one settings object of Shelfcast, read from file and environment here and nowhere else.

Precedence: command-line flags > environment (``SHELFCAST_*``) > the TOML config file
(``SHELFCAST_CONFIG``, else ``<data_dir>/shelfcast.toml`` if present) > defaults.
Every field is documented once, in the README's settings reference.
"""

import ipaddress
import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from shelfcast.errors import ConfigError
from streaming.errors import StreamingError
from streaming.vacuum import check_vacuum_retention

__all__ = ["MIN_TOKEN_LENGTH", "Settings", "is_loopback", "load_settings"]

ENV_PREFIX = "SHELFCAST_"
MIN_TOKEN_LENGTH = 16
_MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) reaches this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every knob of Shelfcast. Frozen: derive a new one with ``model_copy(update=...)``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        validate_default=True,
        # inf and nan pass every bound (nan compares false): a float setting is finite.
        allow_inf_nan=False,
    )

    data_dir: Path = Path(".shelfcast")

    # Kafka
    bootstrap_servers: str = "127.0.0.1:19092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = None
    topic_pos_sales: str = "pos.sales"
    topic_pos_plans: str = "pos.plans"
    topic_pos_stores: str = "pos.stores"
    topic_dlq: str = "pos.sales.dlq"
    topic_forecasts: str = "forecasts"
    topic_partitions: int = Field(default=2, ge=1)
    topic_replication: int = Field(default=1, ge=1)

    # Ingest
    ingest_source: Literal["auto", "kafka", "python"] = "auto"
    ingest_on_data_loss: Literal["fail", "earliest"] = "fail"
    ingest_trigger_seconds: float = Field(default=1.0, gt=0)
    ingest_max_events_per_batch: int = Field(default=200_000, ge=1)
    ingest_max_event_bytes: int = Field(default=65_536, ge=256)
    # The most Kafka bytes a micro-batch brings into the driver at once: the JVM holds ~3x
    # that while it hands the records over, so keep it at most 1/16 of spark_driver_memory.
    ingest_max_batch_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    ingest_max_future_hours: float = Field(default=24.0, ge=0)
    ingest_dedup_window_days: int = Field(default=3, ge=1)
    ingest_compact_every_batches: int = Field(default=50, ge=1)
    ingest_compact_every_hours: float = Field(default=1.0, gt=0)
    delta_vacuum_retention_hours: float = 24.0

    # Spark
    # local[threads,attempts]: a task is tried up to 4 times, as on a cluster (local mode's
    # default is once: a result lost under memory pressure then failed the whole query).
    spark_master: str = "local[2,4]"
    spark_driver_memory: str = "1g"

    # Service
    metrics_port: int = Field(default=9464, ge=0, le=65535)  # 0: off
    metrics_host: str = "127.0.0.1"
    console_port: int | None = Field(default=8470, ge=0, le=65535)  # 0 or empty: off
    console_host: str = "127.0.0.1"
    console_token: SecretStr | None = None
    console_reads_need_token: bool = True  # beyond loopback
    console_trust_loopback: bool = False  # writes from loopback without a token
    console_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    console_max_body_bytes: int = Field(default=65_536, ge=1_024, le=16 * 1024 * 1024)
    console_requests_per_second: float = Field(default=5.0, gt=0)
    console_workers: int = Field(default=2, ge=1, le=16)
    handoff_idle_seconds: float = Field(default=5.0, gt=0)

    # Embedded stack
    jars_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "shelfcast" / "jars")
    embedded_broker: bool = True
    embedded_ray: bool = True

    # Ray
    ray_address: str = "127.0.0.1:16379"
    ray_namespace: str = "shelfcast"
    ray_num_cpus: int | None = Field(default=None, ge=1)
    ray_coordinator_resource: str = "shelfcast_coordinator"  # empty: any node
    ray_coordinator_shards: int = Field(default=1, ge=1, le=64)
    ray_coordinator_detached: bool = True

    # Retrain
    retrain_horizon_days: int = Field(default=28, ge=1, le=366)
    retrain_folds: int = Field(default=4, ge=2, le=10)
    retrain_history_days: int = Field(default=730, ge=28)
    retrain_cold_trials: int = Field(default=20, ge=1)
    retrain_warm_trials: int = Field(default=2, ge=0)
    retrain_keep_margin: float = Field(default=0.02, ge=0, lt=1)
    retrain_uncertainty_samples: int = Field(default=100, ge=0)
    retrain_max_attempts: int = Field(default=3, ge=1)
    retrain_retry_backoff_seconds: float = Field(default=2.0, ge=0)
    retrain_task_timeout_seconds: float = Field(default=600.0, gt=0, le=86_400)
    retrain_batch_size: int = Field(default=32, ge=1, le=1_000)
    retrain_batch_seconds: float = Field(default=2.0, gt=0)
    retrain_warm_folds: int = Field(default=2, ge=2)
    retrain_selection_rule: Literal["one_se", "margin"] = "one_se"
    retrain_reselect_every: int = Field(default=8, ge=1)
    retrain_drift_ratio: float = Field(default=1.5, gt=1)
    retrain_holiday_country: str | None = None
    retrain_holiday_subdivision: str | None = None
    retrain_closure_min_level: float = Field(default=5.0, ge=0)
    # The families a series' selection may choose from (empty: all of them).
    retrain_families: Annotated[tuple[str, ...], NoDecode] = ()
    # The group model (one LightGBM across a group of series; retrain/group)
    retrain_group_enabled: bool = True
    retrain_group_by: Literal["all", "store", "hash"] = "all"
    retrain_group_buckets: int = Field(default=16, ge=1)
    retrain_group_retrain_days: int = Field(default=7, ge=1)
    retrain_group_retrain_hours: float = Field(default=168.0, gt=0)
    retrain_group_drift_series: int = Field(default=3, ge=1)
    retrain_group_cold_trials: int = Field(default=6, ge=1)
    retrain_group_warm_trials: int = Field(default=2, ge=0)
    retrain_group_folds: int = Field(default=4, ge=2, le=10)
    retrain_group_cpus: int = Field(default=1, ge=1)
    retrain_group_timeout_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    retrain_group_wait_seconds: float = Field(default=300.0, ge=0, le=86_400)
    fit_backend: Literal["cmdstan", "inprocess"] = "inprocess"
    optuna_storage: SecretStr | None = None
    optuna_journal_shards: int = Field(default=8, ge=1)
    mlflow_tracking_uri: SecretStr | None = None
    mlflow_experiment: str = "shelfcast"
    # How often a retrain retries a tracking server's failing call (2 s, 4 s, 8 s... apart)
    # before it counts an MLflow outage and waits for MLflow (listed by 'shelfcast status').
    # None: MLflow's MLFLOW_HTTP_REQUEST_MAX_RETRIES where the Ray nodes run, else 3.
    mlflow_retries: int | None = Field(default=None, ge=0, le=10)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        # Resolved here, once: a relative path meant another folder in every process that
        # resolved it later (the Ray coordinator, a command run from elsewhere).
        return path.expanduser().resolve()

    @field_validator("console_port", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("console_token")
    @classmethod
    def _a_token_worth_the_name(cls, token: SecretStr | None) -> SecretStr | None:
        if token is None:
            return None
        length = len(token.get_secret_value().strip())
        if length < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the console token is {'empty' if not length else f'{length} characters'}; "
                f"it needs at least {MIN_TOKEN_LENGTH}: make one with {_MAKE_ONE}, "
                "or unset it (the console is then read-only)"
            )
        return SecretStr(token.get_secret_value().strip())

    @field_validator("console_allowed_hosts", "retrain_families", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("retrain_families")
    @classmethod
    def _known_families(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from retrain.kernel.families import FAMILIES

        unknown = [f for f in value if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown families {unknown}; choose among {', '.join(FAMILIES)}")
        return value

    @field_validator("delta_vacuum_retention_hours")
    @classmethod
    def _retention_a_retrain_can_read(cls, hours: float) -> float:
        try:
            check_vacuum_retention(hours)
        except StreamingError as exc:
            raise ValueError(str(exc).rstrip(".")) from exc
        return hours

    @property
    def delta_dir(self) -> Path:
        """Folder holding the Delta tables."""
        return self.data_dir / "delta"

    @property
    def checkpoint_dir(self) -> Path:
        """Folder holding Spark's streaming checkpoints."""
        return self.data_dir / "checkpoints"

    @property
    def kafka_dir(self) -> Path:
        """The embedded Kafka node's properties and log directory."""
        return self.data_dir.resolve() / "kafka"

    @property
    def run_dir(self) -> Path:
        """Folder for pid files and logs of processes started by ``shelfcast up``."""
        return self.data_dir / "run"

    @property
    def service_status_file(self) -> Path:
        """The running service's last batch and hand-off (``shelfcast status`` reads it)."""
        return self.run_dir / "service-status.json"

    @property
    def optuna_dir(self) -> Path:
        """Folder of the Optuna journal files (when ``optuna_storage`` is not set)."""
        return self.data_dir.resolve() / "optuna"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI: the setting, else a SQLite store under the data dir."""
        if self.mlflow_tracking_uri is not None:
            return self.mlflow_tracking_uri.get_secret_value()
        return f"sqlite:///{self.mlflow_db}"

    @property
    def mlflow_db(self) -> Path:
        """The default MLflow store's SQLite file (unused with a tracking URI)."""
        return self.data_dir.resolve() / "mlflow" / "mlflow.db"

    @property
    def artifact_dir(self) -> Path:
        """Where the default MLflow store keeps artifacts (set explicitly, never ./mlruns)."""
        return self.data_dir.resolve() / "mlflow" / "artifacts"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_file(init_settings())
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
        if secrets_dir:
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def _config_file(init: dict[str, Any]) -> Path | None:
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"SHELFCAST_CONFIG points at {path}, which is not a file.")
        _check_private(path)
        return path
    data_dir = Path(init.get("data_dir") or os.environ.get(f"{ENV_PREFIX}DATA_DIR", ".shelfcast"))
    candidate = data_dir / "shelfcast.toml"
    if not candidate.is_file():
        return None
    _check_private(candidate)
    return candidate


def _secret_fields() -> set[str]:
    return {
        name
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    }


def _check_private(path: Path) -> None:
    """Refuse a config file that holds a secret and that other users may read or change."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return
    try:
        keys = set(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return  # the TOML source reports what does not read
    held = sorted(keys & _secret_fields())
    if held:
        raise ConfigError(
            f"{path} holds secrets ({', '.join(held)}) and its mode {mode:04o} lets other "
            f"users read or change it: run 'chmod 600 {path}'."
        )


def settings_to_json(settings: Settings) -> str:
    """``settings`` as JSON *with their secrets*, for a child process' stdin (never for argv,
    a log or a file): :func:`settings_from_json` gives them back, whatever the child's
    environment says."""
    data = settings.model_dump(mode="json")  # a secret shows as "**********" here
    for name in _secret_fields():
        secret = getattr(settings, name)
        data[name] = secret.get_secret_value() if secret is not None else None
    return json.dumps(data)


def settings_from_json(text: str) -> Settings:
    """The settings :func:`settings_to_json` wrote (every field given: the environment and a
    config file change none, a None included)."""
    return Settings(**json.loads(text))


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; ``overrides`` (command-line flags) win; ``None`` means not given."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(
            f"Invalid settings: {problems}. Fix the environment variable or the config file."
        ) from exc
