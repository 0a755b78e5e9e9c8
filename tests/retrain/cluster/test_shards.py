"""Sharding the queue by series key, and the sharded client's view of the news (pure)."""

from pathlib import Path
from typing import Any

import pyarrow as pa

from retrain.cluster.client import CoordinatorClient, merge_status
from retrain.cluster.queue import Request, RetrainQueue
from retrain.cluster.recovery import busy_series
from retrain.cluster.shards import COORDINATOR, coordinator_name, shard_of, split
from shelfcast.retrain_config import retrain_config
from shelfcast.settings import load_settings
from streaming.schemas import SERIES_STATE
from streaming.tables import TableStore


def test_a_series_always_maps_to_the_same_shard_and_shard_zero_keeps_the_old_name() -> None:
    keys = [f"S{n}|I{n % 7}" for n in range(2000)]
    assert all(shard_of(k, 1) == 0 for k in keys)
    assert [shard_of(k, 4) for k in keys] == [shard_of(k, 4) for k in keys]
    assert (shard_of("1|7", 4), shard_of("2|9", 4)) == (0, 2)  # crc32: every process agrees
    counts = [sum(1 for k in keys if shard_of(k, 4) == s) for s in range(4)]
    assert min(counts) > 400  # spread evenly enough
    assert coordinator_name(0) == COORDINATOR and coordinator_name(3) == f"{COORDINATOR}-3"

    requests = [(k.split("|")[0], k.split("|")[1], float(n)) for n, k in enumerate(keys)]
    parts = split(requests, 4)
    assert sorted(r for part in parts for r in part) == sorted(requests)
    for shard, part in enumerate(parts):
        assert all(shard_of(f"{r[0]}|{r[1]}", 4) == shard for r in part)
        assert [r[2] for r in part] == sorted(r[2] for r in part)  # order kept


def test_news_of_a_queue_that_replaces_a_lost_one_is_numbered_above_it() -> None:
    old = RetrainQueue(seq_base=1_000)
    old.submit([Request("S", "I")], 1, "w", 0.0)
    new = RetrainQueue(seq_base=2_000)
    new.submit([Request("S", "I")], 1, "w", 0.0)
    (first,), (second,) = old.peek_updates(), new.peek_updates()
    assert first["seq"] == 1_001 and second["seq"] == 2_001
    new.ack_updates(first["seq"])  # a driver's acknowledgement of the old queue's news
    assert new.peek_updates() == [second]

    (job,) = new.take(0.0, 1)
    new.succeed(job.key, 1.0)
    assert new.waves["w"].finished == ["S|I"]


class FakeLink:
    def __init__(self, news: list[dict[str, Any]]) -> None:
        self.news = news
        self.acked: list[int] = []
        self.submitted: list[Any] = []

    def peek_updates(self) -> list[dict[str, Any]]:
        return [u for u in self.news if not self.acked or u["seq"] > self.acked[-1]]

    def ack_updates(self, seq: int) -> None:
        self.acked.append(seq)

    def submit(self, due: list[Any], version: int) -> None:
        self.submitted.append((due, version))


def test_the_sharded_client_numbers_news_in_arrival_order_and_acks_each_shard_its_own(
    tmp_path: Path,
) -> None:
    settings = load_settings(data_dir=tmp_path, ray_coordinator_shards=2)
    client = CoordinatorClient(retrain_config(settings))
    a = FakeLink([{"seq": 500, "item_id": "a1"}, {"seq": 501, "item_id": "a2"}])
    b = FakeLink([{"seq": 7, "item_id": "b1"}])
    client.links = [a, b]  # type: ignore[list-item]

    first = client.peek_updates()
    assert [u["seq"] for u in first] == [1, 2, 3]
    assert [u["item_id"] for u in first] == ["a1", "a2", "b1"]
    a.news.append({"seq": 502, "item_id": "a3"})  # arrives after the driver read
    again = client.peek_updates()
    assert [(u["seq"], u["item_id"]) for u in again] == [
        (1, "a1"),
        (2, "a2"),
        (3, "b1"),
        (4, "a3"),
    ]
    client.ack_updates(3)  # what the driver stored of the first read
    assert a.acked == [501] and b.acked == [7]  # a3 (502) was not acknowledged
    assert [u["item_id"] for u in client.peek_updates()] == ["a3"]

    due = [(f"S{n}", "I", 1.0, 3) for n in range(40)]
    client.submit(due, 9)
    sent = {d for link in (a, b) for part, _ in link.submitted for d in part}
    assert sent == set(due) and a.submitted and b.submitted
    for shard, link in enumerate((a, b)):
        assert all(shard_of(f"{d[0]}|{d[1]}", 2) == shard for d in link.submitted[0][0])


def test_shard_statuses_add_up() -> None:
    def status(n: int, latest: str) -> dict[str, Any]:
        return {
            "queued": n,
            "running": 1,
            "rerun": 0,
            "poison": 1,
            "capacity": 2,
            "retrains_last_minute": n,
            "mean_retrain_seconds": float(n),
            "published": 10 * n,
            "cpu_seconds": 0.5,
            "poisoned": {f"S{n}|I": {"error": "x"}},
            "latest": [{"series": f"S{n}|I", "at": latest}],
            "outages": {"MLflow": {"series": n, "since": 100.0 - n, "error": "e", "example": "k"}},
        }

    merged = merge_status([status(1, "2026-01-01T00:00:01"), status(3, "2026-01-01T00:00:02")])
    assert (merged["queued"], merged["capacity"], merged["published"]) == (4, 4, 40)
    assert merged["mean_retrain_seconds"] == (1 * 1 + 3 * 3) / 4
    assert set(merged["poisoned"]) == {"S1|I", "S3|I"}
    assert [e["series"] for e in merged["latest"]] == ["S3|I", "S1|I"]
    assert len(merged["shards"]) == 2
    assert merged["outages"]["MLflow"] == {"series": 4, "since": 97.0, "error": "e", "example": "k"}


def test_the_busy_series_of_series_state_are_what_a_new_coordinator_resubmits(
    tmp_path: Path,
) -> None:
    assert busy_series(tmp_path) == ([], -1)  # no tables yet
    store = TableStore(tmp_path)
    store.ensure()
    blank = dict.fromkeys(SERIES_STATE.names)
    rows = [
        {**blank, "store_id": "S1", "item_id": "I1", "status": "queued", "total_events": 40},
        {**blank, "store_id": "S1", "item_id": "I2", "status": "running", "total_events": 9},
        {**blank, "store_id": "S1", "item_id": "I3", "status": "done", "total_events": 5},
        {**blank, "store_id": "S1", "item_id": "I4", "status": "failed", "total_events": 5},
    ]
    assert store.upsert_series_once(pa.Table.from_pylist(rows, schema=SERIES_STATE), "t", 0)

    found, version = busy_series(tmp_path)
    assert version == int(store.table("daily_sales").version())
    assert sorted((r.key, r.data) for r in found) == [("S1|I1", 40), ("S1|I2", 9)]
    mine = [busy_series(tmp_path, shard, 2)[0] for shard in (0, 1)]
    assert sorted(r.key for part in mine for r in part) == ["S1|I1", "S1|I2"]
    for shard, part in enumerate(mine):
        assert all(shard_of(r.key, 2) == shard for r in part)
