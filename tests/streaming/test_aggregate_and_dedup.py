from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from streaming.aggregate import daily_increments, update_series_state
from streaming.dedup import EventIdIndex
from streaming.schemas import POS_SALES, SERIES_STATE

NOW = datetime(2024, 3, 5, tzinfo=UTC)


def events(*rows: tuple[str, str, str, date, float]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "event_id": e,
                "store_id": s,
                "item_id": i,
                "sale_date": d,
                "quantity": q,
                "unit_price": 2.0,
                "sold_at": datetime(d.year, d.month, d.day, 10, tzinfo=UTC),
                "kafka_timestamp": NOW,
                "batch_id": 0,
            }
            for e, s, i, d, q in rows
        ],
        schema=POS_SALES,
    )


D1, D2 = date(2024, 3, 4), date(2024, 3, 5)


def test_daily_increments_sum_units_revenue_and_returns() -> None:
    out = daily_increments(events(("a", "S", "I", D1, 3), ("b", "S", "I", D1, -1)), 7)
    assert out.to_pylist() == [
        {
            "store_id": "S",
            "item_id": "I",
            "day": D1,
            "units": 2.0,
            "revenue": 4.0,
            "returns": 1.0,
            "event_count": 2,
            "updated_batch_id": 7,
        }
    ]


def test_series_state_counts_distinct_days_once() -> None:
    first = update_series_state(SERIES_STATE.empty_table(), events(("a", "S", "I", D1, 1)), 0, NOW)
    second = update_series_state(
        first, events(("b", "S", "I", D1, 1), ("c", "S", "I", D2, 1)), 1, NOW
    )
    row = second.to_pylist()[0]
    assert row["total_events"] == 3 and row["events_since_retrain"] == 3
    assert row["days_since_retrain"] == 2 and row["pending_days"] == [D1, D2]
    assert row["last_sale_day"] == D2 and row["updated_batch_id"] == 1


def test_dedup_drops_stored_ids_and_repeats_within_a_batch() -> None:
    stored = pa.table({"event_id": ["a"], "sale_date": [D1], "batch_id": [0]})
    loads: list[list[date]] = []

    def load(days: list[date]) -> pa.Table:
        loads.append(list(days))
        return stored if D1 in days else stored.slice(0, 0)

    index = EventIdIndex(load, window_days=3)
    batch = events(("a", "S", "I", D1, 1), ("b", "S", "I", D1, 1), ("b", "S", "I", D1, 1))
    new = index.new_events(batch)
    assert new.column("event_id").to_pylist() == ["b"]
    index.add(new)
    assert index.new_events(events(("b", "S", "I", D1, 1))).num_rows == 0
    assert loads == [[D1 - timedelta(days=k) for k in (3, 2, 1, 0)]]  # the window, read once


def test_dedup_forgets_days_outside_the_window_and_reloads_them() -> None:
    calls: list[list[date]] = []

    def load(days: list[date]) -> pa.Table:
        calls.append(list(days))
        return pa.table(
            {"event_id": pa.array([], pa.string()), "sale_date": pa.array([], pa.date32())}
        )

    index = EventIdIndex(load, window_days=1)
    index.add(index.new_events(events(("a", "S", "I", D1, 1))))
    index.add(index.new_events(events(("z", "S", "I", D1 + timedelta(days=5), 1))))
    assert index.new_events(events(("a", "S", "I", D1, 1))).num_rows == 1  # D1 is forgotten...
    assert calls[-1] == [D1]  # ...and read again from the table, alone


def test_dedup_after_a_replay_still_loads_what_earlier_batches_stored() -> None:
    # After a restart Spark replays the last batch; its stored rows are added before any
    # day was loaded. The day must still load the rest of the table later.
    stored = pa.table({"event_id": ["old", "replayed"], "sale_date": [D1, D1], "batch_id": [0, 7]})
    index = EventIdIndex(lambda days: stored, window_days=3)
    index.add(events(("replayed", "S", "I", D1, 1)))
    retry = events(("old", "S", "I", D1, 1), ("replayed", "S", "I", D1, 1))
    assert index.new_events(retry).num_rows == 0


def test_dedup_keeps_kafka_order_across_days() -> None:
    index = EventIdIndex(lambda days: pa.table({"event_id": ["x"], "sale_date": [D2]}), 3)
    batch = events(
        ("a", "S", "I", D2, 1),
        ("x", "S", "I", D2, 1),
        ("b", "S", "I", D1, 1),
        ("a", "S", "I", D2, 1),
        ("c", "S", "I", D2, 1),
        ("a", "S", "I", D1, 1),  # a retry with another sale day is the same event
    )
    assert index.new_events(batch).column("event_id").to_pylist() == ["a", "b", "c"]


def test_an_event_id_is_one_event_whatever_its_sale_day() -> None:
    d0 = D2 - timedelta(days=3)
    stored = pa.table({"event_id": ["old"], "sale_date": [d0]})
    index = EventIdIndex(
        lambda days: stored.filter(pc.is_in(stored["sale_date"], pa.array(days))), 3
    )
    # Stored three days before, retried with another day, seen by a fresh driver.
    assert index.new_events(events(("old", "S", "I", D2, 1))).num_rows == 0
    index.add(index.new_events(events(("x", "S", "I", D1, 1))))
    retries = events(("x", "S", "I", D2, 1), ("y", "S", "I", d0, 1), ("old", "S", "I", D1, 1))
    assert index.new_events(retries).column("event_id").to_pylist() == ["y"]
