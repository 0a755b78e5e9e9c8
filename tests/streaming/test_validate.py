"""split_batch's column-wise fast path gives exactly the verdicts of the per-record contract."""

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from contracts import PosSale, validate_pos_sale
from streaming.validate import Limits, split_batch

NOW = datetime(2024, 3, 4, 12, tzinfo=UTC)
LIMITS = Limits(max_bytes=400, max_future=timedelta(hours=24))


def doc(**changes: object) -> bytes:
    base = {
        "event_id": "e",
        "store_id": "S1",
        "item_id": "I1",
        "sold_at": "2024-03-04T10:00:00+01:00",
        "quantity": 2,
        "unit_price": 1.5,
    }
    return json.dumps({**base, **changes}).encode()


RECORDS: list[tuple[bytes | None, bytes | None, datetime | None]] = [
    (b"S1|I1", doc(event_id="ok"), NOW),
    (None, doc(event_id="no key"), NOW),
    (b"", doc(event_id="empty key"), NOW),
    (b"S2|I1", doc(event_id="wrong key"), NOW),
    (b"S1|I1", doc(event_id="tomorrow+", sold_at="2024-03-05T12:00:00.000001+00:00"), NOW),
    (b"S1|I1", doc(event_id="just in time", sold_at="2024-03-05T12:00:00+00:00"), NOW),
    (b"S1|I1", doc(event_id="far, no stamp", sold_at="2030-01-01T00:00:00+00:00"), None),
    (b"S1|I1", doc(event_id="late, stamped", sold_at="2024-03-06T00:00:00+00:00"), NOW),
    (
        b"S1|I1",
        doc(event_id="stamp later", sold_at="2024-03-06T00:00:00+00:00"),
        NOW + timedelta(days=2),
    ),
    (b"S1|I1", doc(pad="x" * 400), NOW),
    (b"S1|I1", b"{broken", NOW),
    (b"S1|I1", b"\xff", NOW),
    (b"S1|I1", None, NOW),
    (b"S1|I1", doc(quantity="2"), NOW),
    ("S\u00e9|I1".encode(), doc(event_id="utf8 key", store_id="S\u00e9"), NOW),
]


def test_fast_path_matches_the_contract_record_by_record() -> None:
    raw = pa.table(
        {
            "key": pa.array([k for k, _, _ in RECORDS], pa.binary()),
            "value": pa.array([v for _, v, _ in RECORDS], pa.binary()),
            "topic": ["pos.sales"] * len(RECORDS),
            "partition": pa.array([0] * len(RECORDS), pa.int32()),
            "offset": pa.array(range(len(RECORDS)), pa.int64()),
            "timestamp": pa.array([t for _, _, t in RECORDS], pa.timestamp("us", tz="UTC")),
        }
    )
    split = split_batch(raw, 3, NOW, LIMITS)
    expected_good, expected_reasons = [], []
    for offset, (key, value, stamp) in enumerate(RECORDS):
        verdict = validate_pos_sale(
            key,
            value,
            reference_time=stamp or NOW,
            max_bytes=LIMITS.max_bytes,
            max_future=LIMITS.max_future,
        )
        if isinstance(verdict, PosSale):
            expected_good.append((offset, verdict.event_id))
        else:
            expected_reasons.append((offset, verdict.reason))
    events = split.events
    good = zip(events["kafka_offset"].to_pylist(), events["event_id"].to_pylist(), strict=True)
    assert list(good) == expected_good
    rejects = split.rejects
    why = zip(rejects["source_offset"].to_pylist(), rejects["reason"].to_pylist(), strict=True)
    assert list(why) == expected_reasons
    assert len(expected_good) == 6 and len(expected_reasons) == 9
    first = events.slice(0, 1).to_pylist()[0]
    assert first["sale_date"].isoformat() == "2024-03-04" and first["batch_id"] == 3
