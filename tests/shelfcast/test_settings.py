import os
from pathlib import Path

import pytest

from shelfcast.settings import load_settings


def test_a_relative_data_dir_is_made_absolute_where_the_settings_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHELFCAST_DATA_DIR", raising=False)
    assert load_settings().data_dir == tmp_path.resolve() / ".shelfcast"
    assert load_settings(data_dir=Path("data")).data_dir == tmp_path.resolve() / "data"
    monkeypatch.chdir(os.sep)  # a process elsewhere reads the same paths from these settings
    assert load_settings(data_dir=tmp_path / "data").delta_dir == tmp_path.resolve() / "data/delta"


def _float_fields() -> list[str]:
    from shelfcast.settings import Settings

    return sorted(
        name
        for name, field in Settings.model_fields.items()
        if float in (field.annotation, *getattr(field.annotation, "__args__", ()))
    )


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e400"])
@pytest.mark.parametrize("name", _float_fields())
def test_every_float_setting_refuses_a_non_finite_value(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shelfcast.errors import ConfigError

    monkeypatch.setenv(f"SHELFCAST_{name.upper()}", value)
    with pytest.raises(ConfigError, match=f"SHELFCAST_{name.upper()}"):
        load_settings()


def test_the_float_settings_are_all_checked() -> None:
    assert {
        "handoff_idle_seconds",
        "retrain_retry_backoff_seconds",
        "retrain_drift_ratio",
        "delta_vacuum_retention_hours",
    } <= set(_float_fields())


@pytest.mark.parametrize("token", ["", "   ", "short-token"])
def test_an_empty_or_short_console_token_is_refused_with_what_to_do(
    token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shelfcast.errors import ConfigError

    monkeypatch.setenv("SHELFCAST_CONSOLE_TOKEN", token)
    with pytest.raises(ConfigError, match="at least 16") as refused:
        load_settings()
    assert "token_urlsafe" in str(refused.value)
    # An empty secret file reads the same way.
    monkeypatch.delenv("SHELFCAST_CONSOLE_TOKEN")
    (tmp_path / "shelfcast_console_token").write_text(token + "\n")
    monkeypatch.setenv("SHELFCAST_SECRETS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="at least 16"):
        load_settings()


def test_a_long_enough_token_is_kept_without_its_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shelfcast_console_token").write_text("0123456789abcdef\n")
    monkeypatch.setenv("SHELFCAST_SECRETS_DIR", str(tmp_path))
    token = load_settings().console_token
    assert token is not None and token.get_secret_value() == "0123456789abcdef"


def test_allowed_hosts_read_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELFCAST_CONSOLE_ALLOWED_HOSTS", "console.example, shelfcast ,")
    assert load_settings().console_allowed_hosts == ("console.example", "shelfcast")


def test_a_config_file_holding_secrets_must_be_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shelfcast.errors import ConfigError

    config = tmp_path / "shelfcast.toml"
    config.write_text('optuna_storage = "postgresql://u:pw@db/optuna"\n')
    config.chmod(0o644)
    monkeypatch.setenv("SHELFCAST_CONFIG", str(config))
    with pytest.raises(ConfigError, match=f"chmod 600 {config}") as refused:
        load_settings()
    assert "optuna_storage" in str(refused.value) and "pw" not in str(refused.value)
    config.chmod(0o600)
    assert load_settings().optuna_storage is not None
    # Without a secret in it, a readable config file is fine (and found in the data dir too).
    monkeypatch.delenv("SHELFCAST_CONFIG")
    plain = tmp_path / "data" / "shelfcast.toml"
    plain.parent.mkdir()
    plain.write_text("topic_partitions = 3\n")
    plain.chmod(0o644)
    assert load_settings(data_dir=plain.parent).topic_partitions == 3
    plain.write_text('console_token = "0123456789abcdef0"\n')
    with pytest.raises(ConfigError, match="chmod 600"):
        load_settings(data_dir=plain.parent)
