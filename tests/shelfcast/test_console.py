"""The console's API and pages on real Delta tables and threshold files (no Kafka, no Ray: the
status payload is passed in), through Starlette's TestClient."""

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from fastapi.testclient import TestClient
from pydantic import SecretStr

from shelfcast.console import create_app
from shelfcast.console.access import ConsoleAccessError, check_write, is_loopback
from shelfcast.console.data import events_per_second
from shelfcast.settings import Settings, load_settings
from streaming.schemas import FORECASTS, PLANS, QUARANTINE, SERIES_STATE
from streaming.tables import TableStore
from streaming.thresholds import ThresholdStore
from tests.support.series import demand, write_daily

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


def _plan_row(plan_id: str, store: str, item: str, first: int, days: int, **extra: Any) -> Any:
    through = START + timedelta(days=DAYS - 1)
    return {
        "plan_id": plan_id,
        "revision": 1,
        "cancelled": False,
        "store_id": store,
        "item_id": item,
        "start_date": through + timedelta(days=first),
        "end_date": through + timedelta(days=first + days - 1),
        "kind": "promotion",
        "published_at": datetime(2024, 3, 1, tzinfo=UTC),
        **extra,
    }


def test_plans_are_shaded_on_the_chart_and_each_series_shows_its_next_plan(
    console: Any, tmp_path: Path
) -> None:
    rows = [
        _plan_row("past", "S1", "*", -30, 5),  # over before the last sale day
        _plan_row("promo", "S1", "*", 3, 3),
        _plan_row("shut", "S1", "A", 6, 1, kind="closure"),
        _plan_row("gone", "S1", "*", 2, 1, cancelled=True),
        _plan_row("other", "S1", "Z", 1, 2),  # another item of the store
    ]
    TableStore(tmp_path / "data" / "delta").append_once(
        "plans", pa.Table.from_pylist(rows, schema=PLANS), "t", 9
    )
    client = console()
    detail = client.get("/api/series/S1|A").json()
    assert [p["plan_id"] for p in detail["plans"]] == ["past", "promo", "shut"]
    assert detail["next_plan"]["plan_id"] == "promo"
    shapes = detail["figure"]["layout"]["shapes"]
    assert len(shapes) == 3  # the past promotion is within the 120 days of actuals shown
    names = [t["name"] for t in detail["figure"]["data"]]
    assert names[-2:] == ["planned closure", "planned promotion"]
    assert "Next plan: promotion" in client.get("/series/S1%7CA").text
    table = {r["key"]: r["next_plan"] for r in client.get("/api/series").json()["rows"]}
    assert table["S1|A"]["plan_id"] == "promo" and table["S2|B"] is None
    assert "promotion" in client.get("/series").text


TOKEN = "s3cret-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_thresholds_change_through_the_same_validation_and_audit_as_the_cli(
    console: Any, tmp_path: Path
) -> None:
    client = console(console_token=TOKEN)
    client.headers.update(BEARER)
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


def test_a_form_read_before_a_newer_change_cannot_override_it(console: Any, tmp_path: Path) -> None:
    client = console(console_token=TOKEN)
    client.headers.update(BEARER)
    read = client.get("/api/thresholds").json()["revision"]
    assert f'data-revision="{read}"' in client.get("/thresholds").text
    ThresholdStore(tmp_path / "data").set({"min_new_events": "9"}, who="ops")  # meanwhile
    stale = {"changes": {"min_new_events": "5"}, "revision": read}
    refused = client.put("/api/thresholds", json=stale)
    assert refused.status_code == 400
    assert "min_new_events changed after revision" in refused.json()["detail"]
    assert ThresholdStore(tmp_path / "data").load().min_new_events == 9
    assert client.post("/api/thresholds/reset", json={"revision": read}).status_code == 400
    fresh = client.get("/api/thresholds").json()["revision"]
    ok = client.put("/api/thresholds", json={**stale, "revision": fresh})
    assert ok.status_code == 200 and ok.json()["values"]["min_new_events"] == 5


def test_token_rules(console: Any, tmp_path: Path) -> None:
    change = {"changes": {"min_new_events": "7"}}
    # No token: read-only, on loopback too (any local user or a port-forward reaches it).
    local = console()
    assert local.get("/api/thresholds").status_code == 200
    refused = local.put("/api/thresholds", json=change)
    assert refused.status_code == 403 and "SHELFCAST_CONSOLE_TOKEN" in refused.json()["detail"]
    assert "read-only" in local.get("/thresholds").text
    # ... unless loopback is trusted explicitly.
    trusting = console(console_trust_loopback=True)
    assert trusting.put("/api/thresholds", json=change).status_code == 200
    assert (
        console(console_host="0.0.0.0", console_trust_loopback=True, console_reads_need_token=False)
        .put("/api/thresholds", json=change)
        .status_code
        == 403
    )
    # With a token, writes need it in the header (wherever the console listens).
    for host in ["0.0.0.0", "127.0.0.1"]:
        guarded = console(console_host=host, console_token=TOKEN)
        assert guarded.put("/api/thresholds", json=change, headers=BEARER).status_code == 200
        for wrong in ["Bearer nope", "Bearer ", "Bearer", f"Basic {TOKEN}", ""]:
            answer = guarded.put("/api/thresholds", json=change, headers={"Authorization": wrong})
            assert answer.status_code == 401, (host, wrong)
    # A form post from another site's page is not JSON: refused, before its body is read.
    plain = {"Content-Type": "text/plain", **BEARER}
    guarded = console(console_token=TOKEN)
    form = guarded.put("/api/thresholds", content=b"changes=1", headers=plain)
    assert form.status_code == 415
    assert guarded.post("/api/thresholds/reset", content=b"", headers=plain).status_code == 415
    assert ThresholdStore(tmp_path / "data").load().min_new_events == 7  # the last good write
    # Loopback: a request naming another host (DNS rebinding) is refused.
    assert local.get("/api/status", headers={"Host": "evil.example"}).status_code == 400


def test_reads_beyond_loopback_need_the_token(console: Any) -> None:
    import base64

    wide = console(console_host="0.0.0.0", console_token=TOKEN, console_allowed_hosts="*")
    for path in ["/api/series", "/", "/series/S1%7CA", "/static/console.css"]:
        answer = wide.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Basic")
    assert wide.get("/api/series", headers=BEARER).status_code == 200
    # A browser asks for it once: any user name, the token as password.
    basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    assert wide.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    wrong = base64.b64encode(b"ops:guess").decode()
    assert wide.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    # Beyond loopback without a token: every request refused, saying what to set.
    open_wide = console(console_host="0.0.0.0", console_allowed_hosts="*")
    refused = open_wide.get("/api/series")
    assert refused.status_code == 403
    assert "SHELFCAST_CONSOLE_READS_NEED_TOKEN=false" in refused.json()["detail"]
    public = console(
        console_host="0.0.0.0", console_allowed_hosts="*", console_reads_need_token=False
    )
    assert public.get("/api/series").status_code == 200
    # On loopback reads stay open.
    assert console(console_token=TOKEN).get("/api/series").status_code == 200


def test_hosts_beyond_loopback_come_from_the_allow_list(console: Any) -> None:
    named = console(
        console_host="0.0.0.0",
        console_token=TOKEN,
        console_allowed_hosts="console.example,127.0.0.1",
    )
    named.headers.update(BEARER)
    assert named.get("/api/series", headers={"Host": "console.example:8470"}).status_code == 200
    refused = named.get("/api/series", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    assert "SHELFCAST_CONSOLE_ALLOWED_HOSTS" in refused.json()["detail"]
    # Default beyond loopback: loopback's names, and the address it listens on if not a wildcard.
    bound = console(console_host="10.1.2.3", console_token=TOKEN)
    bound.headers.update(BEARER)
    assert bound.get("/api/series", headers={"Host": "10.1.2.3:8470"}).status_code == 200
    assert bound.get("/api/series", headers={"Host": "rebound.example"}).status_code == 400


def test_an_oversized_body_is_refused_before_it_is_read_or_authorised(
    console: Any, tmp_path: Path
) -> None:
    big = b'{"changes": {"min_new_events": "' + b"7" * 200_000 + b'"}}'
    for client in [console(), console(console_host="0.0.0.0", console_allowed_hosts="*")]:
        # Refused by its length alone: before the token check (403 or 401 otherwise).
        answer = client.put(
            "/api/thresholds", content=big, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 413, answer.text
        assert "SHELFCAST_CONSOLE_MAX_BODY_BYTES" in answer.json()["detail"]
    # Streamed without a length (chunked): counted as it arrives.
    guarded = console(console_token=TOKEN)
    chunks = (b"x" * 16_384 for _ in range(20))
    streamed = guarded.put(
        "/api/thresholds", content=chunks, headers={"Content-Type": "application/json", **BEARER}
    )
    assert streamed.status_code == 413
    small = console(console_token=TOKEN, console_max_body_bytes=2048)
    lie = small.put(
        "/api/thresholds",
        content=b"[" + b"1," * 2000 + b"1]",
        headers={"Content-Type": "application/json", "Content-Length": "10", **BEARER},
    )
    assert lie.status_code in (400, 413, 422)  # never read whole past the limit
    assert ThresholdStore(tmp_path / "data").revision == 0


def _refused(app: Any, headers: dict[str, str], chunks: list[bytes]) -> list[str]:
    """What the console does with a PUT whose body comes in ``chunks``, in order: each
    ``receive`` of the body, and the answer's status."""
    done: list[str] = []
    messages = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        done.append("receive")
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            done.append(str(message["status"]))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/api/thresholds",
        "raw_path": b"/api/thresholds",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8470),
    }
    asyncio.run(app(scope, receive, send))
    return done


def test_a_refusal_reads_the_request_body_to_its_end_before_it_answers(console: Any) -> None:
    # A refusal closes the connection. Closed with the body still arriving, the socket is
    # reset, and the reset can take the answer with it: a client sending its headers and
    # body apart saw "connection reset by peer" in place of a 401 on a busy machine.
    body = [b'{"changes": ', b'{"min_new_events": "7"}}']
    json_put = {"Host": "127.0.0.1", "Content-Type": "application/json", "Content-Length": "36"}
    guarded = console(console_token=TOKEN).app
    assert _refused(guarded, json_put, body) == ["receive", "receive", "401"]
    not_json = {**json_put, "Content-Type": "text/plain", **BEARER}
    assert _refused(guarded, not_json, body) == ["receive", "receive", "415"]
    named = console(console_host="0.0.0.0", console_token=TOKEN).app
    elsewhere = {**json_put, "Host": "evil.example", **BEARER}
    assert _refused(named, elsewhere, body) == ["receive", "receive", "400"]
    # Over the limit by its length: answered unread, as before.
    too_long = {**json_put, "Content-Length": str(10**9)}
    assert _refused(guarded, too_long, body) == ["413"]


def test_security_headers_and_no_cdn(console: Any) -> None:
    client = console()
    for path in ["/", "/series/S1%7CA", "/api/series", "/static/console.js"]:
        answer = client.get(path)
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], path
        assert "script-src 'self';" in answer.headers["content-security-policy"], path
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/series").headers["cache-control"] == "no-store"
    assert client.get("/api/docs").status_code == 404
    assert client.get("/api/openapi.json").json()["info"]["title"] == "Shelfcast console"
    for path in ["/", "/queue", "/series", "/series/S1%7CA", "/thresholds"]:
        html = client.get(path).text
        assert "https://" not in html and "http://" not in html, path
        assert "<script>" not in html, path  # no inline script: the CSP allows none


def test_each_client_is_slowed_to_its_rate_then_refused(console: Any) -> None:
    import time

    client = console(console_requests_per_second=2)  # bursts of 4
    started = time.monotonic()
    codes = [client.get("/api/thresholds").status_code for _ in range(6)]
    assert codes == [200] * 6  # one after another: slowed to 2 a second, not refused
    assert time.monotonic() - started >= 0.8
    slow = console(console_requests_per_second=0.2)  # one now, the next in 5 s
    assert slow.get("/api/thresholds").status_code == 200
    started = time.monotonic()
    limited = slow.get("/api/thresholds")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert time.monotonic() - started >= 0.9  # answered after a pause: no tight loop on it
    assert slow.get("/static/console.css").status_code == 200  # static files are not counted


def test_series_are_paged_and_a_series_reads_only_its_files(console: Any, tmp_path: Path) -> None:
    from shelfcast.console.data import TableReader

    client = console()
    first = client.get("/api/series", params={"limit": 1}).json()
    second = client.get("/api/series", params={"limit": 1, "offset": 1}).json()
    assert first["total"] == second["total"] == 2
    assert [r["key"] for r in first["rows"] + second["rows"]] == ["S1|A", "S2|B"]
    assert client.get("/api/series", params={"limit": 100_000}).status_code == 422
    # The forecasts table holds one file per write: a series page opens its series' files.
    store = TableStore(tmp_path / "data" / "delta")
    for n, item in enumerate(["B", "C", "D"]):
        rows = pa.Table.from_pylist(
            [{"store_id": "S9", "item_id": item, "model_version": 1, "day": START,
              "yhat": 1.0, "yhat_lower": 0.0, "yhat_upper": 2.0, "data_through": START,
              "method": "m", "validation_mase": 1.0, "mase_scale": 1.0,
              "generated_at": datetime(2024, 4, 1, tzinfo=UTC)}],
            schema=FORECASTS,
        )  # fmt: skip
        store.append_once("forecasts", rows, "more", 10 + n)
    opened, total = TableReader(tmp_path / "data" / "delta").files(
        "forecasts", store_id="S9", item_id="C"
    )
    assert (opened, total) == (1, 4)
    assert [m["model_version"] for m in client.get("/api/series/S9|C").json()["models"]] == [1]
    # Compacted, a store's writes are one file: a series opens its store's, not the others'.
    store.compact(["forecasts"])
    reader = TableReader(tmp_path / "data" / "delta")
    assert reader.files("forecasts", store_id="S9", item_id="C") == (1, 2)
    assert reader.files("forecasts", store_id="S1", item_id="A") == (1, 2)
    assert [r["item_id"] for r in reader.series("S9", "D", "forecasts")] == ["D"]
    # A chart's actuals: the days after the cut, day and units only (not the store's history).
    through = START + timedelta(days=DAYS - 1)
    recent = reader.history("S1", "A", through, 3)
    assert [r["day"] for r in recent] == [through - timedelta(days=k) for k in (2, 1, 0)]
    assert {tuple(r) for r in recent} == {("day", "units")}


def test_an_appended_table_with_a_file_of_another_writer_still_reads_its_series(
    tmp_path: Path,
) -> None:
    """Appended tables are compared without casting to string; a file a merge wrote (its
    strings as string_view) makes the read fall back to the cast, not fail."""
    from shelfcast.console.data import TableReader

    delta = tmp_path / "delta"
    rows = pa.table(
        {"store_id": ["S1", "S1", "S2"], "item_id": ["A", "B", "A"], "day": [START] * 3}
    )
    write_deltalake(str(delta / "forecasts"), rows, partition_by=["store_id"])
    reader = TableReader(delta, fresh=0.0)
    assert [r["item_id"] for r in reader.series("S1", "A", "forecasts")] == ["A"]
    (
        DeltaTable(str(delta / "forecasts"))
        .merge(
            pa.table({"store_id": ["S1"], "item_id": ["C"], "day": [START]}),
            "s.store_id = t.store_id AND s.item_id = t.item_id",
            source_alias="s",
            target_alias="t",
        )
        .when_not_matched_insert_all()
        .execute()
    )
    files = DeltaTable(str(delta / "forecasts")).file_uris()
    assert pa.string_view() in {pq.read_schema(f).field("item_id").type for f in files}
    assert [r["item_id"] for r in reader.series("S1", "C", "forecasts")] == ["C"]
    assert [r["item_id"] for r in reader.series("S1", "A", "forecasts")] == ["A"]


def test_a_flat_table_of_before_is_kept_read_and_written_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from shelfcast.console.data import TableReader

    delta = tmp_path / "delta"
    DeltaTable.create(str(delta / "forecasts"), FORECASTS)  # made before it was by store
    store = TableStore(delta)
    with caplog.at_level(logging.WARNING, "shelfcast.tables"):
        store.ensure()
    assert "forecasts is partitioned by nothing, not by ['store_id']" in caplog.text
    assert "drift" not in caplog.text  # made now: by store
    assert DeltaTable(str(delta / "drift")).metadata().partition_columns == ["store_id"]
    rows = [
        {"store_id": store_id, "item_id": "A", "model_version": 1, "day": START}
        for store_id in ("S1", "S2")
    ]
    store.append_once("forecasts", pa.Table.from_pylist(rows, schema=FORECASTS), "t", 1)
    assert DeltaTable(str(delta / "forecasts")).metadata().partition_columns == []
    reader = TableReader(delta)
    assert [r["store_id"] for r in reader.series("S2", "A", "forecasts")] == ["S2"]
    assert reader.files("forecasts", store_id="S2", item_id="A") == (1, 1)  # one flat file
    # Moved as docs/operations.md says: by store, the same rows, writes still exactly once.
    table = DeltaTable(str(delta / "forecasts"))
    rows_now = table.to_pyarrow_dataset().scanner().to_reader()
    write_deltalake(table, rows_now, mode="overwrite", partition_by=["store_id"],
                    schema_mode="overwrite")  # fmt: skip
    moved = DeltaTable(str(delta / "forecasts"))
    assert moved.metadata().partition_columns == ["store_id"]
    assert sorted(moved.to_pyarrow_table().column("store_id").to_pylist()) == ["S1", "S2"]
    again = pa.Table.from_pylist(rows, schema=FORECASTS)
    assert not store.append_once("forecasts", again, "t", 1)  # that batch landed before
    assert TableReader(delta).files("forecasts", store_id="S2", item_id="A") == (1, 2)


def test_check_write_and_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    check_write("127.0.0.1", None, None, trust_loopback=True)
    for host in ["127.0.0.1", "0.0.0.0"]:
        with pytest.raises(ConsoleAccessError) as refused:
            check_write(host, None, "Bearer x")
        assert refused.value.status == 403
    token = SecretStr("t" * 16)
    check_write("0.0.0.0", token, "Bearer " + "t" * 16)
    check_write("0.0.0.0", token, "bearer " + "t" * 16)
    with pytest.raises(ConsoleAccessError):
        check_write("127.0.0.1", token, "Basic " + "t" * 16)
    # An empty token (however it got there) never lets 'Bearer ' through.
    for header in ["Bearer ", "Bearer", "", None]:
        with pytest.raises(ConsoleAccessError) as refused:
            check_write("127.0.0.1", SecretStr(""), header)
        assert refused.value.status == 401
    assert "secret-value" not in repr(load_settings(console_token="secret-value-0123456"))


def test_the_console_port_off_and_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from shelfcast.console import console_url

    monkeypatch.setenv("SHELFCAST_CONSOLE_PORT", "")
    assert console_url(load_settings()) is None
    assert console_url(load_settings(console_port=0)) is None
    assert console_url(load_settings(console_port=8470)) == "http://127.0.0.1:8470/"
    assert console_url(load_settings(console_port=8470, console_host="::1")) == "http://[::1]:8470/"


def test_the_queue_page_lists_the_series_waiting_for_an_outage(tmp_path: Path) -> None:
    outage = {"series": 3, "since": 1_700_000_000.0, "error": "MLflow is unreachable",
              "example": "S1|A"}  # fmt: skip
    status = {**STATUS, "coordinator": {**STATUS["coordinator"], "outages": {"MLflow": outage}}}
    settings = load_settings(data_dir=tmp_path / "data")
    client = TestClient(create_app(settings, lambda: status), base_url="http://127.0.0.1")
    page = client.get("/queue").text
    assert 'id="outages"' in page
    assert "<td>MLflow</td>" in page and "2023-11-14T22:13:20" in page
    assert 'href="/series/S1%7CA"' in page and "MLflow is unreachable" in page
    assert (
        'id="outages"'
        not in TestClient(create_app(settings, lambda: STATUS), base_url="http://127.0.0.1")
        .get("/queue")
        .text
    )


def test_a_series_page_before_any_state_row_is_empty_not_an_error(tmp_path: Path) -> None:
    from shelfcast.console.data import ConsoleData

    settings = load_settings(data_dir=tmp_path / "data")
    TableStore(settings.delta_dir).ensure()  # every table there, no row yet
    data = ConsoleData(settings)
    try:
        states = data.series_state()
        assert states is not None and states.num_rows == 0
        detail = data.series_detail("S1|A", states)
        assert detail["state"] is None and detail["forecast"] is None
        assert data.series_detail("S1|A")["models"] == []  # the state read afresh
    finally:
        data.close()
