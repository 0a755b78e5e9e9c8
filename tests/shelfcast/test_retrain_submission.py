"""What ``shelfcast retrain`` submits: each series with the model version it last served, read
from a real ``series_state`` table, so that its next forecast's version is higher whatever
its Optuna study holds (a study lost, or moved by a new shard count)."""

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from shelfcast.errors import ShelfcastError
from shelfcast.retrain_command import all_series, chosen_series
from shelfcast.settings import Settings, load_settings
from streaming.aggregate import update_series_state
from streaming.tables import TableStore


def served(settings: Settings, keys: list[tuple[str, str]], versions: list[str | None]) -> None:
    """``series_state`` rows as the ingest leaves them, with the versions the news set."""
    store = TableStore(settings.delta_dir)
    store.ensure()
    now = datetime.now(UTC)
    events = pa.table(
        {
            "store_id": [s for s, _ in keys],
            "item_id": [i for _, i in keys],
            "sale_date": pa.array([date(2024, 1, 1)] * len(keys), pa.date32()),
            "sold_at": pa.array([now] * len(keys), pa.timestamp("us", tz="UTC")),
            "kafka_timestamp": pa.array([now] * len(keys), pa.timestamp("us", tz="UTC")),
        }
    )
    rows = update_series_state(store.series_rows(keys), events, 1, now)
    column = rows.schema.get_field_index("model_version")
    rows = rows.set_column(
        column, rows.schema.field(column), pa.array(versions, rows.schema.field(column).type)
    )
    store.upsert_series_once(rows, "test", 1)


def test_a_wave_by_hand_hands_each_series_its_last_served_version(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ShelfcastError, match="run 'shelfcast ingest' first"):
        all_series(settings)
    assert chosen_series(settings, [("S1", "I1")]) == [("S1", "I1", 0.0, None, None, None)]

    served(settings, [("S1", "I1"), ("S1", "I2")], ["7", None])
    assert sorted(all_series(settings)) == [
        ("S1", "I1", 1.0, None, None, 7),
        ("S1", "I2", 1.0, None, None, None),
    ]
    assert chosen_series(settings, [("S1", "I1"), ("S9", "new")]) == [
        ("S1", "I1", 0.0, None, None, 7),
        ("S9", "new", 0.0, None, None, None),
    ]
