"""Compaction off the writers' path: requests coalesce, a failure is not the end, appends
during a compaction are all kept (real delta-rs); when a micro-batch asks for one."""

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from streaming.compaction import Compactor, MaintenanceProcess
from streaming.errors import TableError
from streaming.maintain import NICE
from streaming.pipeline import maintenance_due
from streaming.schemas import FORECASTS
from streaming.tables import TableStore


def test_requests_made_while_one_runs_are_done_once_after_it_together() -> None:
    release = threading.Event()
    calls: list[tuple[list[str], float | None]] = []

    def work(names: Sequence[str], vacuum: float | None) -> None:
        calls.append((list(names), vacuum))
        if len(calls) == 1:
            release.wait(10)

    compactor = Compactor(work)
    compactor.request(["forecasts"])
    while not calls:
        threading.Event().wait(0.01)
    compactor.request(["drift"])
    compactor.request(["forecasts"], vacuum_hours=48)
    compactor.request([])  # nothing asked: no run
    assert not compactor.wait(0.05)  # the first is still running
    release.set()
    assert compactor.wait(10)
    assert calls == [(["forecasts"], None), (["drift", "forecasts"], 48)]
    compactor.close()
    compactor.request(["drift"])  # closed: ignored
    assert compactor.wait(1) and len(calls) == 2


def test_a_failed_compaction_leaves_the_thread_for_the_next_request() -> None:
    calls: list[list[str]] = []

    def work(names: Sequence[str], vacuum: float | None) -> None:
        calls.append(list(names))
        if len(calls) == 1:
            raise OSError("disk full")

    compactor = Compactor(work)
    compactor.request(["forecasts"])
    assert compactor.wait(10)
    compactor.request(["drift"])
    assert compactor.wait(10)
    assert calls == [["forecasts"], ["drift"]]
    compactor.close()


def forecasts(store_id: str, n: int, version: int) -> pa.Table:
    at = datetime(2024, 3, 4, tzinfo=UTC)
    rows = [
        {
            "store_id": store_id,
            "item_id": f"I{k}",
            "model_version": version,
            "generated_at": at,
            "day": at.date(),
            "yhat": float(k),
        }
        for k in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=FORECASTS)


def test_appends_while_the_compactor_works_are_all_kept(tmp_path: Path) -> None:
    store = TableStore(tmp_path)
    store.ensure()
    for batch in range(30):
        store.append_once("forecasts", forecasts(f"S{batch % 5}", 20, batch), "h", batch)
    for batch in range(30, 60):
        if batch % 10 == 0:
            store.compact_soon(["forecasts", "series_state"])
        store.append_once("forecasts", forecasts(f"S{batch % 5}", 20, batch), "h", batch)
    assert store.compactor.wait(60)
    store.compact_soon(["forecasts"])
    assert store.compactor.wait(60)

    dt = DeltaTable(str(tmp_path / "forecasts"))
    assert len(dt.file_uris()) == 5  # a file a store
    versions = dt.to_pyarrow_table(columns=["model_version"]).column(0).to_pylist()
    assert sorted(set(versions)) == list(range(60)) and len(versions) == 60 * 20
    assert dt.transaction_version("h") == 59
    store.compactor.close()


def _nice(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[16])
    except (OSError, IndexError):
        return None


def _in_flight(apart: MaintenanceProcess, names: list[str]) -> tuple[threading.Thread, int]:
    """``apart(names)`` on a thread of its own, once its process has started; and its pid."""
    thread = threading.Thread(target=apart, args=(names, None))
    thread.start()
    deadline = time.monotonic() + 30
    while apart.pid is None and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.002)
    assert apart.pid is not None, "the maintenance process never started"
    return thread, apart.pid


def test_the_maintenance_runs_in_a_process_after_the_service_in_priority(tmp_path: Path) -> None:
    store = TableStore(tmp_path)
    store.ensure()
    for batch in range(20):
        store.append_once("forecasts", forecasts(f"S{batch % 5}", 20, batch), "h", batch)
    apart = MaintenanceProcess(str(tmp_path))
    thread, pid = _in_flight(apart, ["forecasts"])
    seen = set()
    while thread.is_alive():
        seen.add(_nice(pid))
        time.sleep(0.002)
    assert NICE in seen  # set before delta-rs starts its threads, which take it on
    assert len(DeltaTable(str(tmp_path / "forecasts")).file_uris()) == 5  # a file a store
    assert _nice(pid) is None  # and gone
    assert "storage" not in repr(apart)


def test_stopping_ends_the_maintenance_in_flight_and_a_failure_is_said(tmp_path: Path) -> None:
    store = TableStore(tmp_path)
    store.ensure()
    apart = MaintenanceProcess(str(tmp_path))
    thread, pid = _in_flight(apart, ["forecasts"])
    began = time.monotonic()
    apart.stop()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - began < 5
    assert _nice(pid) is None
    apart(["forecasts"], None)  # stopped: no process
    assert apart.pid is None
    with pytest.raises(TableError, match="exited with 1"):
        MaintenanceProcess(str(tmp_path / "no tables here"))(["forecasts"], None)


def test_maintenance_is_due_every_n_batches_or_once_the_time_passed() -> None:
    assert [b for b in range(10) if maintenance_due(b, 5, 0.0, 60.0)] == [4, 9]
    assert maintenance_due(0, 5, 60.0, 60.0) and not maintenance_due(0, 5, 59.9, 60.0)
