"""The hand-off on real Delta tables: retrain news acknowledged only once stored, and the
served-forecast cache rebuilt from a bounded read."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from streaming.aggregate import update_series_state
from streaming.drift import lineage
from streaming.handoff import Handoff
from streaming.pipeline import BatchReport
from streaming.schemas import DRIFT, FORECASTS
from streaming.served import ServedForecasts
from streaming.tables import TableStore
from streaming.thresholds import ThresholdStore

pytestmark = pytest.mark.integration

DAY = date(2024, 3, 4)
NOW = datetime.now(UTC)
SERIES = [("S1", "I1"), ("S1", "I2")]


class Coordinator:
    """The retrain side as the hand-off sees it: news kept until acknowledged."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.submitted: list[str] = []
        self.data: dict[str, int | None] = {}
        self.served: dict[str, int | None] = {}
        self.seq = 0

    def submit(self, due: list[tuple[Any, ...]], version: int) -> None:
        self.submitted.extend(f"{d[0]}|{d[1]}" for d in due)
        self.data.update({f"{d[0]}|{d[1]}": d[3] for d in due})
        self.served.update({f"{d[0]}|{d[1]}": d[5] for d in due})

    def note(self, store_id: str, item_id: str, status: str, at: datetime) -> None:
        self.seq += 1
        self.updates.append(
            {
                "seq": self.seq,
                "store_id": store_id,
                "item_id": item_id,
                "status": status,
                "at": at.timestamp(),
                "version": 1,
            }
        )

    def peek_updates(self) -> list[dict[str, Any]]:
        return list(self.updates)

    def ack_updates(self, seq: int) -> None:
        self.updates = [u for u in self.updates if u["seq"] > seq]

    def finish(self, store_id: str, item_id: str, model_version: int) -> None:
        self.seq += 1
        points = [
            {
                "date": (DAY + timedelta(days=k)).isoformat(),
                "yhat": 2.0,
                "yhat_lower": 1.0,
                "yhat_upper": 3.0,
            }
            for k in range(1, 8)
        ]
        self.updates.append(
            {
                "seq": self.seq,
                "store_id": store_id,
                "item_id": item_id,
                "status": "done",
                "at": NOW.timestamp(),
                "seconds": 1.0,
                "model_version": str(model_version),
                "error": None,
                "mase_scale": 1.0,
                "forecast": {
                    "model_version": model_version,
                    "points": points,
                    "data_through": DAY.isoformat(),
                    "method": "tuned",
                    "family": "combo",
                    "validation_mase": 0.8,
                    "generated_at": NOW.isoformat(),
                },
            }
        )


def tables(root: Path) -> TableStore:
    store = TableStore(root / "delta")
    store.ensure()
    if not store.series_state():
        events = pa.table(
            {
                "store_id": [s for s, _ in SERIES],
                "item_id": [i for _, i in SERIES],
                "sale_date": pa.array([DAY] * len(SERIES), pa.date32()),
                "sold_at": pa.array([NOW] * len(SERIES), pa.timestamp("us", tz="UTC")),
                "kafka_timestamp": pa.array([NOW] * len(SERIES), pa.timestamp("us", tz="UTC")),
            }
        )
        store.upsert_series_once(
            update_series_state(store.series_rows(SERIES), events, 0, NOW), "ingest", 0
        )
    return store


def batch(batch_id: int, store: TableStore) -> BatchReport:
    return BatchReport(
        batch_id=batch_id,
        records=0,
        stored=0,
        duplicates=0,
        quarantined=0,
        series=0,
        seconds=0.0,
        replayed=batch_id < 6,
        daily_version=int(store.table("daily_sales").version()),
        changed_series=(),
    )


def forecast_rows(root: Path) -> list[tuple[str, str, int]]:
    rows = DeltaTable(str(root / "delta" / "forecasts")).to_pyarrow_table().to_pylist()
    return sorted((r["store_id"], r["item_id"], r["model_version"]) for r in rows)


def test_news_is_acknowledged_only_once_stored_across_a_replayed_batch(tmp_path: Path) -> None:
    coordinator = Coordinator()
    store = tables(tmp_path)
    coordinator.finish("S1", "I1", 1)
    Handoff(store, ThresholdStore(tmp_path), coordinator, lambda: "app").after_batch(
        batch(5, store)
    )
    assert coordinator.updates == []
    # The driver dies before Spark commits batch 5's offsets; meanwhile S1|I2 finishes.
    coordinator.finish("S1", "I2", 1)
    store = tables(tmp_path)
    restarted = Handoff(store, ThresholdStore(tmp_path), coordinator, lambda: "app")
    restarted.after_batch(batch(5, store))  # Spark replays batch 5: its writes had landed
    assert [u["item_id"] for u in coordinator.updates] == ["I2"]  # not stored: not acked
    assert forecast_rows(tmp_path) == [("S1", "I1", 1)] * 7

    restarted.after_batch(batch(6, store))
    assert coordinator.updates == []
    assert forecast_rows(tmp_path) == [("S1", "I1", 1)] * 7 + [("S1", "I2", 1)] * 7
    state = TableStore(tmp_path / "delta").series_state()
    assert state["S1|I2"]["model_version"] == "1" and state["S1|I2"]["last_retrain_at"]
    assert state["S1|I2"]["family"] == "combo"


def test_a_retrain_on_a_days_first_sales_leaves_that_day_to_the_forecast_that_served_it(
    tmp_path: Path,
) -> None:
    store = tables(tmp_path)
    served = ServedForecasts(store)
    coordinator = Coordinator()
    coordinator.finish("S1", "I1", 1)  # serves DAY + 1 to DAY + 7
    assert served.record_forecasts(coordinator.updates, "app", 1) == (1, True)
    # DAY + 1's first sales retrain it: v2's data runs through DAY + 1, its forecast after.
    coordinator.updates = []
    coordinator.finish("S1", "I1", 2)
    later = coordinator.updates[0]["forecast"]
    later["points"] = later["points"][1:]
    assert served.record_forecasts(coordinator.updates, "app", 2) == (1, True)

    def versions(cache: ServedForecasts) -> list[tuple[int, list[date]]]:
        return [(s.model_version, list(s.points)) for s in lineage(cache.served["S1|I1"])]

    v2_days = [DAY + timedelta(days=k) for k in range(2, 8)]
    assert versions(served) == [(1, [DAY + timedelta(days=1)]), (2, v2_days)]
    restarted = ServedForecasts(store)  # a restart rebuilds the same from Delta
    assert versions(restarted) == versions(served)

    # A sale on DAY + 2 completes DAY + 1: v1 served it, v1 scores it.
    drifted, stored = restarted.record_drift(
        (("S1", "I1"),), {"S1|I1": DAY + timedelta(days=2)}, "app", 3, NOW
    )
    assert (drifted, stored) == ({"S1|I1": 1}, True)
    rows = DeltaTable(str(tmp_path / "delta" / "drift")).to_pyarrow_table().to_pylist()
    assert [(r["model_version"], r["day"], r["yhat"]) for r in rows] == [
        (1, DAY + timedelta(days=1), 2.0)
    ]
    assert versions(restarted) == [(2, v2_days)]  # scored once: nothing of v1 left
    assert versions(ServedForecasts(store)) == [(2, v2_days)]


def forecast(store_id: str, version: int, generated_at: datetime) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "store_id": store_id,
                "item_id": "I1",
                "model_version": version,
                "day": DAY + timedelta(days=k),
                "yhat": 2.0,
                "yhat_lower": 1.0,
                "yhat_upper": 3.0,
                "data_through": DAY,
                "method": "tuned",
                "validation_mase": 0.5,
                "mase_scale": 1.0,
                "generated_at": generated_at,
            }
            for k in range(1, 4)
        ],
        schema=FORECASTS,
    )


def drift(store_id: str, version: int, recorded_at: datetime) -> pa.Table:
    row = {
        "store_id": store_id,
        "item_id": "I1",
        "model_version": version,
        "day": DAY + timedelta(days=1),
        "actual": 3.0,
        "yhat": 2.0,
        "scaled_error": 1.0,
        "recorded_at": recorded_at,
        "batch_id": 1,
    }
    return pa.Table.from_pylist([row], schema=DRIFT)


def test_start_up_reads_recent_forecasts_and_drift_not_the_whole_tables(tmp_path: Path) -> None:
    store = TableStore(tmp_path / "delta")
    store.ensure()
    long_ago = NOW - timedelta(days=400)
    store.append_once("forecasts", forecast("OLD", 1, long_ago), "x", 1)
    store.append_once("drift", drift("OLD", 1, long_ago), "x", 1)
    store.append_once("forecasts", forecast("NEW", 2, NOW - timedelta(days=1)), "x", 2)
    store.append_once("drift", drift("NEW", 2, NOW), "x", 2)
    # Years of history the start-up must not read: its files are gone, so a read would fail.
    for name in ("forecasts", "drift"):
        for uri in DeltaTable(str(tmp_path / "delta" / name), version=1).file_uris():
            Path(uri.removeprefix("file://")).unlink()

    handoff = Handoff(
        TableStore(tmp_path / "delta"), ThresholdStore(tmp_path), Coordinator(), lambda: "app"
    )
    assert set(handoff.served) == {"NEW|I1"}
    served = handoff.served["NEW|I1"]
    assert (served.model_version, len(served.points), served.live_mase) == (2, 3, 1.0)
    assert served.drift_ratio == 2.0


def test_the_service_clears_only_what_it_handed_over_from_force(tmp_path: Path) -> None:
    store = tables(tmp_path)
    operator = ThresholdStore(tmp_path)
    operator.set({"force": "S1|I1"})

    class Busy(Coordinator):
        def submit(self, due: list[tuple[str, str, float]], version: int) -> None:
            # An operator forces another series while the hand-off is under way.
            operator.set({"force": "S1|I1,S1|I2"})

    Handoff(store, ThresholdStore(tmp_path), Busy(), lambda: "app").after_batch(batch(6, store))
    assert ThresholdStore(tmp_path).load().force == ("S1|I2",)


def test_a_series_queued_by_hand_is_offered_again_after_the_busy_timeout(tmp_path: Path) -> None:
    # 'shelfcast retrain' queued S1|I1 two hours ago (the driver never handed it over), then
    # its worker was lost: no news since. S1|I2 it queued just now: busy, not offered.
    coordinator = Coordinator()
    two_hours_ago = NOW - timedelta(hours=2)
    coordinator.note("S1", "I1", "queued", two_hours_ago)
    coordinator.note("S1", "I1", "running", two_hours_ago)
    coordinator.note("S1", "I2", "queued", datetime.now(UTC))
    store = tables(tmp_path)
    handoff = Handoff(store, ThresholdStore(tmp_path), coordinator, lambda: "app")
    handoff.after_batch(batch(7, store))

    assert coordinator.submitted == ["S1|I1"]
    state = TableStore(tmp_path / "delta").series_state()
    assert state["S1|I1"]["status"] == "queued"
    assert state["S1|I1"]["last_submitted_at"] > two_hours_ago  # handed over again now


def test_each_series_goes_with_its_stored_events_and_a_forced_one_without(
    tmp_path: Path,
) -> None:
    # The coordinator keeps a poisoned series out while its stored events stay the same; an
    # operator's force says none, which lifts the poison.
    coordinator = Coordinator()
    store = tables(tmp_path)
    ThresholdStore(tmp_path).set({"force": "S1|I2"})
    Handoff(store, ThresholdStore(tmp_path), coordinator, lambda: "app").after_batch(
        batch(7, store)
    )
    assert coordinator.data == {"S1|I1": 1, "S1|I2": None}


def test_a_series_goes_with_the_model_version_of_its_last_served_forecast(
    tmp_path: Path,
) -> None:
    # Its next forecast's version is above it, even if its study was lost or moved.
    coordinator = Coordinator()
    store = tables(tmp_path)
    handoff = Handoff(store, ThresholdStore(tmp_path), coordinator, lambda: "app")
    handoff.after_batch(batch(7, store))
    assert coordinator.served == {"S1|I1": None, "S1|I2": None}
    coordinator.finish("S1", "I1", 7)
    ThresholdStore(tmp_path).set({"force": "S1|I1"})
    handoff.after_batch(batch(8, store))
    assert coordinator.served["S1|I1"] == 7


def test_the_tables_a_long_wave_writes_are_compacted_without_micro_batches(
    tmp_path: Path,
) -> None:
    """In a wave without new sales no micro-batch runs the pipeline's maintenance, and each
    hand-off adds a file to ``forecasts``: the hand-off compacts what it writes itself."""
    coordinator = Coordinator()
    store = tables(tmp_path)
    handoff = Handoff(store, ThresholdStore(tmp_path), coordinator, lambda: "app", compact_every=4)
    for version in range(1, 11):
        coordinator.finish("S1", "I1", version)
        handoff.tick()
    assert store.compactor.wait(60)  # forecasts and drift are compacted on a thread
    files = len(DeltaTable(str(tmp_path / "delta" / "forecasts")).file_uris())
    assert files <= 4, f"{files} files after 10 hand-offs"
    assert [v for _, _, v in forecast_rows(tmp_path)] == [v for v in range(1, 11) for _ in range(7)]
