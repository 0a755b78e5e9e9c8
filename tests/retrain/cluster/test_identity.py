from pathlib import Path

from pydantic import SecretStr

from retrain.cluster.identity import differences, retrain_identity
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import Settings, load_settings


def identity(settings: Settings) -> dict[str, str]:
    config = retrain_config(settings)
    return retrain_identity(config.coordinator, config.shards)


def test_differences_name_each_setting_and_never_show_a_secret(tmp_path: Path) -> None:
    service = load_settings(data_dir=tmp_path / "svc")
    other = load_settings(
        data_dir=tmp_path / "other",
        mlflow_tracking_uri=SecretStr("postgresql://u:p/w@db/mlflow"),
        retrain_cold_trials=5,
    )
    assert differences(identity(service), identity(service)) == []
    found = differences(identity(service), identity(other))
    assert [d.split(" ")[0] for d in found] == [
        "data_dir",
        "spec.daily_sales_uri",
        "spec.journal_dir",
        "spec.plans_uri",
        "spec.stores_uri",
        "spec.tracking_uri",
        "spec.tune.cold_trials",
    ]
    assert f"coordinator: {tmp_path / 'svc'}, yours: {tmp_path / 'other'}" in found[0]
    assert not any("p/w" in d for d in found)
