"""A burst of ~1 MB records, 1.2 GB in all, through either Kafka source into a service whose
Spark driver has its default 1 GB: the batch is read within the driver's byte budget (large
values cut), every record is quarantined once, the stream goes on, and every invariant
holds. Before, the driver collected the whole batch and died of it at every restart."""

import hashlib
from collections.abc import Callable

import pytest
from deltalake import DeltaTable

from shelfcast.settings import Settings
from tests.support.events import history
from tests.support.invariants import assert_invariants, settled, stored
from tests.support.service import FAST, ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

RECORD_BYTES = 990_000  # just under the producer's and the broker's ~1 MB default
BURST = 1_250  # ~1.24 GB: more than the driver's whole heap


def burst(tag: str) -> list[tuple[None, bytes]]:
    """Records no contract takes, each ~1 MB (compressible: the broker's disk stays small)."""
    return [(None, f"{tag}-{k:05d}|".encode() + b"x" * RECORD_BYTES) for k in range(BURST)]


@pytest.mark.parametrize("source", ["kafka", "python"])
def test_a_burst_of_large_records_is_read_within_the_drivers_budget(
    make_settings: Callable[..., Settings],
    service_on: Callable[..., ServiceProcess],
    produce: Callable[..., int],
    source: str,
) -> None:
    settings = make_settings(**FAST, ingest_source=source)
    assert settings.spark_driver_memory == "1g"
    svc = service_on(settings, SHELFCAST_INGEST_SOURCE=source)
    events = [e for n in range(3) for e in history("B", f"I{n}", days=45, tag=f"b{source}")]
    first, rest = events[: len(events) // 2], events[len(events) // 2 :]
    produce(settings, first)
    svc.start()
    stored(settings, 180, svc.alive)
    # The burst, and the sales after it: all of it lands in one micro-batch or a few.
    records = burst(source)
    for half in (records[: BURST // 2], records[BURST // 2 :]):  # the producer's queue: 1 GB
        produce(settings, half, **{"linger.ms": 50})
    produce(settings, rest)
    settled(settings, events, 420, svc.alive)
    quarantine = DeltaTable(str(settings.delta_dir / "quarantine")).to_pyarrow_table(
        columns=[
            "source_offset",
            "source_partition",
            "raw_value",
            "raw_value_size",
            "raw_value_sha256",
            "reason",
        ]
    )
    rows = quarantine.to_pylist()
    assert len(rows) == BURST
    assert len({(r["source_partition"], r["source_offset"]) for r in rows}) == BURST
    sent = {value[: len(f"{source}-00000|")]: value for _, value in records}
    cut = 0
    for r in rows:
        original = sent[r["raw_value"][: len(f"{source}-00000|")]]
        assert r["reason"].startswith(f"message is {len(original)} bytes, over the limit")
        if r["raw_value_size"] is None:  # a batch within the budget: whole, as before
            assert r["raw_value"] == original
        else:
            cut += 1
            assert r["raw_value"] == original[:65_536]
            assert r["raw_value_size"] == len(original)
            assert r["raw_value_sha256"] == hashlib.sha256(original).hexdigest()
    assert cut > BURST // 2, "most of the burst came in a batch over the budget"
    assert "over the driver's" in svc.log_path.read_text(), svc.log()
    assert_invariants(settings, events, svc.alive)
