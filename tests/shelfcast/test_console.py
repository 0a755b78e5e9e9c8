"""The console's API and pages on real Delta tables and threshold files (no Kafka, no Ray: the
status payload is passed in), through Starlette's TestClient."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from shelfcast.console import create_app
from shelfcast.console.access import ConsoleAccessError, check_write, is_loopback
from shelfcast.console.data import events_per_second
from shelfcast.settings import Settings, load_settings
from streaming.schemas import FORECASTS, QUARANTINE, SERIES_STATE
from streaming.tables import TableStore
from streaming.thresholds import ThresholdStore
from tests.conftest import demand, write_daily

START = date(2024, 1, 1)
DAYS = 90
STATUS = {
    "service": {
        "started_at": "2024-04-01T00:00:00+00:00",
        "recent_batches": [
            {"batch_id": 1, "at": "2024-04-01T00:00:01+00:00", "records": 10, "stored": 10,
             "duplicates": 0, "quarantined": 0, "changed_series": 2, "seconds": 0.5},
            {"batch_id": 2, "at": "2024-04-01T00:00:03+00:00", "records": 41, "stored": 40,
             "duplicates": 0, "quarantined": 1, "changed_series": 1, "seconds": 0.4},
        ],
    },
    "lag": {"0": {"end": 50, "read": 50, "lag": 0}, "1": {"end": 7, "read": 5, "lag": 2}},
    "series": {"done": 1, "new": 1},
    "coordinator": {"queued": 0, "running": 0, "rerun": 0, "capacity": 2, "poisoned": {},
                    "retrains_last_minute": 1, "published": 1, "latest": []},
}  # fmt: skip


def _tables(settings: Settings) -> None:
    """Two series in daily_sales and series_state; S1|A has two served model versions."""
    write_daily(
        settings, {("S1", "A"): demand(DAYS, seed=1), ("S2", "B"): demand(DAYS, seed=2)}, START
    )
    store = TableStore(settings.delta_dir)
    through = START + timedelta(days=DAYS - 1)
    now = datetime(2024, 4, 1, tzinfo=UTC)
    forecasts = [
        {
            "store_id": "S1",
            "item_id": "A",
            "model_version": version,
            "day": through + timedelta(days=k + 1),
            "yhat": 20.0 + k,
            "yhat_lower": 15.0 + k,
            "yhat_upper": 25.0 + k,
            "data_through": through,
            "method": "tuned",
            "validation_mase": 0.8,
            "mase_scale": 3.0,
            "generated_at": now + timedelta(minutes=version),
        }
        for version in (1, 2)
        for k in range(7)
    ]
    store.append_once("forecasts", pa.Table.from_pylist(forecasts, schema=FORECASTS), "t", 1)
    state = [
        {"store_id": "S1", "item_id": "A", "total_events": 300, "status": "done",
         "model_version": "2", "family": "ets", "validation_mase": 0.8, "drift_ratio": 1.1,
         "last_retrain_at": now, "last_sale_day": through},
        {"store_id": "S2", "item_id": "B", "total_events": 280, "status": None,
         "last_sale_day": through},
    ]  # fmt: skip
    store.upsert_series_once(pa.Table.from_pylist(state, schema=SERIES_STATE), "t", 2)
    bad = [
        {"source_topic": "pos", "source_partition": 0, "source_offset": n, "raw_key": b"k",
         "raw_value": b"{", "reason": reason, "quarantined_at": now, "batch_id": 2}
        for n, reason in enumerate(["not JSON", "not JSON", "quantity: not a number"])
    ]  # fmt: skip
    store.append_once("quarantine", pa.Table.from_pylist(bad, schema=QUARANTINE), "t", 3)


@pytest.fixture
def console(tmp_path: Path) -> Any:
    """A client factory: the console over one data dir with real tables, with any settings."""
    data_dir = tmp_path / "data"
    _tables(load_settings(data_dir=data_dir))

    def make(**overrides: Any) -> TestClient:
        settings = load_settings(data_dir=data_dir, **overrides)
        return TestClient(create_app(settings, lambda: STATUS), base_url="http://127.0.0.1")

    return make


def test_status_is_the_shared_payload_and_pages_render(console: Any) -> None:
    client = console()
    assert client.get("/api/status").json() == STATUS
    health = client.get("/api/health").json()
    assert health["events_per_second"] == 0.0  # those batches are long past
    recent = [
        {"at": (datetime.now(UTC) - timedelta(seconds=s)).isoformat(), "stored": n}
        for s, n in [(90, 1000), (30, 60), (10, 60)]
    ]
    assert events_per_second(recent, datetime.now(UTC)) == pytest.approx(2.0)
    assert health["quarantine"]["total"] == 3
    assert health["quarantine"]["reasons"][0] == {"reason": "not JSON", "count": 2}
    for path in ["/", "/queue", "/series", "/series/S1%7CA", "/thresholds"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert "<nav>" in response.text
    assert "quantity: not a number" in client.get("/").text
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000  # served locally


def test_series_table_searches_and_a_series_has_its_chart_and_model_history(console: Any) -> None:
    client = console()
    everything = client.get("/api/series").json()
    assert [r["key"] for r in everything["rows"]] == ["S1|A", "S2|B"]
    assert everything["rows"][1]["state"] == "new"
    assert [r["key"] for r in client.get("/api/series", params={"q": "s2|"}).json()["rows"]] == [
        "S2|B"
    ]
    assert [r["key"] for r in client.get("/api/series", params={"q": "ets"}).json()["rows"]] == [
        "S1|A"
    ]
    assert "S2|B" not in client.get("/series", params={"q": "S1"}).text

    detail = client.get("/api/series/S1|A").json()
    assert detail["forecast"]["model_version"] == 2
    assert len(detail["forecast"]["points"]) == 7
    assert [m["model_version"] for m in detail["models"]] == [2, 1]
    assert len(detail["history"]) == DAYS
    names = [t["name"] for t in detail["figure"]["data"]]
    assert names == ["interval", "actual", "forecast"]
    assert "model v2, ets" in detail["figure"]["layout"]["title"]["text"]
    assert client.get("/api/series/S2|B").json()["forecast"] is None
    assert client.get("/api/series/nokey").status_code == 400


def test_thresholds_change_through_the_same_validation_and_audit_as_the_cli(
    console: Any, tmp_path: Path
) -> None:
    client = console()
    store = ThresholdStore(tmp_path / "data")
    answer = client.put(
        "/api/thresholds", json={"changes": {"min_new_events": "50", "force": "S1|A,S2|B"}}
    )
    assert answer.status_code == 200, answer.text
    assert store.load().min_new_events == 50
    assert store.load().force == ("S1|A", "S2|B")
    assert {(e["key"], e["by"]) for e in store.history()} == {
        ("min_new_events", "console testclient"),
        ("force", "console testclient"),
    }
    refused = client.put("/api/thresholds", json={"changes": {"cooldown_seconds": "inf"}})
    assert refused.status_code == 400 and "nothing changed" in refused.json()["detail"]
    unknown = client.put("/api/thresholds", json={"changes": {"nope": "1"}})
    assert unknown.status_code == 400 and "Unknown threshold" in unknown.json()["detail"]
    assert len(store.history()) == 2
    assert "console testclient" in client.get("/thresholds").text
    assert client.post("/api/thresholds/reset", json={}).status_code == 200
    assert store.load().min_new_events != 50


def test_token_rules(console: Any, tmp_path: Path) -> None:
    change = {"changes": {"min_new_events": "7"}}
    # Beyond loopback without a token: reads only.
    public = console(console_host="0.0.0.0")
    assert public.get("/api/thresholds").status_code == 200
    refused = public.put("/api/thresholds", json=change)
    assert refused.status_code == 403 and "SHELFCAST_CONSOLE_TOKEN" in refused.json()["detail"]
    # With a token, writes need it in the header (wherever the console listens); reads don't.
    for host in ["0.0.0.0", "127.0.0.1"]:
        guarded = console(console_host=host, console_token="s3cret-token")
        assert guarded.get("/api/series").status_code == 200
        assert guarded.put("/api/thresholds", json=change).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert guarded.put("/api/thresholds", json=change, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert guarded.put("/api/thresholds", json=change, headers=right).status_code == 200
    # A form post from another site's page is not JSON: refused even on loopback.
    local = console()
    form = local.put(
        "/api/thresholds", content=b"changes=1", headers={"Content-Type": "text/plain"}
    )
    assert form.status_code == 422  # FastAPI reads the body as JSON or not at all
    plain = {"Content-Type": "text/plain"}
    assert local.post("/api/thresholds/reset", content=b"", headers=plain).status_code == 415
    assert ThresholdStore(tmp_path / "data").load().min_new_events == 7  # the last good write
    # Loopback: a request naming another host (DNS rebinding) is refused.
    assert local.get("/api/status", headers={"Host": "evil.example"}).status_code == 400


def test_check_write_and_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    check_write("127.0.0.1", None, None)
    with pytest.raises(ConsoleAccessError) as refused:
        check_write("0.0.0.0", None, "Bearer x")
    assert refused.value.status == 403
    token = SecretStr("t")
    check_write("0.0.0.0", token, "Bearer t")
    check_write("0.0.0.0", token, "bearer t")
    with pytest.raises(ConsoleAccessError):
        check_write("127.0.0.1", token, "Basic t")
    assert "secret-value" not in repr(load_settings(console_token="secret-value"))


def test_the_console_port_off_and_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from shelfcast.console import console_url

    monkeypatch.setenv("SHELFCAST_CONSOLE_PORT", "")
    assert console_url(load_settings()) is None
    assert console_url(load_settings(console_port=0)) is None
    assert console_url(load_settings(console_port=8470)) == "http://127.0.0.1:8470/"
    assert console_url(load_settings(console_port=8470, console_host="::1")) == "http://[::1]:8470/"
