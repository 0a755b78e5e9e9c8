import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streaming.drift import Points, Served, drift_errors, lineage, succeeded
from streaming.errors import StreamingError
from streaming.thresholds import ThresholdStore
from streaming.trigger import Thresholds, due_among, due_series, waiting

NOW = datetime(2024, 3, 4, 12, tzinfo=UTC)


def row(item: str, events: int = 0, days: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "store_id": "S",
        "item_id": item,
        "events_since_retrain": events,
        "days_since_retrain": days,
        "status": None,
        "last_submitted_at": None,
        "drift_ratio": None,
        **extra,
    }


def keys(rows: list[dict[str, Any]], t: Thresholds) -> list[str]:
    return [d.key for d in due_series(rows, t, NOW)]


def test_new_data_makes_a_series_due_most_changed_first_capped() -> None:
    rows = [row("a", 5, 1), row("b", 50, 2), row("c", 0, 0), row("d", 3, 1)]
    assert keys(rows, Thresholds(min_new_events=4)) == ["S|b", "S|a"]
    assert keys(rows, Thresholds(min_new_events=1, min_new_days=2)) == ["S|b"]
    assert keys(rows, Thresholds(max_series_per_wave=2)) == ["S|b", "S|a"]


def test_cooldown_busy_drift_and_force() -> None:
    recent = NOW - timedelta(seconds=10)
    rows = [
        row("cool", 9, 1, last_submitted_at=recent),
        row("busy", 9, 1, status="queued", last_submitted_at=recent),
        row("stuck", 9, 1, status="running", last_submitted_at=NOW - timedelta(hours=1)),
        row("drift", 1, 0, drift_ratio=3.0),
        row("quiet"),
    ]
    t = Thresholds(cooldown_seconds=60, drift_ratio=2.5, force=("S|quiet",))
    assert set(keys(rows, t)) == {"S|stuck", "S|drift", "S|quiet"}
    assert keys(rows, t)[0] == "S|quiet"  # forced goes first
    assert "S|drift" not in keys(rows, t.model_copy(update={"drift_ratio": None}))


def test_drift_without_new_data_is_not_retried_every_cooldown() -> None:
    # Its retrain failed (the ratio stays until one succeeds) and nothing new arrived.
    rows = [row("failed", 0, 0, drift_ratio=3.0, status="failed")]
    rows[0]["last_submitted_at"] = NOW - timedelta(hours=5)
    assert keys(rows, Thresholds(drift_ratio=2.0)) == []
    rows[0]["events_since_retrain"] = 1
    assert keys(rows, Thresholds(drift_ratio=2.0)) == ["S|failed"]


def test_a_busy_series_with_no_submission_time_is_offered_again() -> None:
    rows = [row("legacy", 9, 1, status="running"), row("fresh", 9, 1, status="queued")]
    rows[1]["last_submitted_at"] = NOW - timedelta(seconds=10)
    assert keys(rows, Thresholds()) == ["S|legacy"]


def test_only_waiting_rows_and_forced_ones_can_be_due() -> None:
    # The hand-off tests only these (the store keeps them): over many rows and thresholds,
    # the rest is never due.
    rng = random.Random(7)
    statuses = [None, "queued", "running", "done", "failed"]
    for _ in range(200):
        rows = [
            row(
                f"i{n}",
                rng.choice([0, 0, 1, 5]),
                rng.choice([0, 1, 3]),
                status=rng.choice(statuses),
                last_submitted_at=rng.choice([None, NOW - timedelta(seconds=rng.uniform(0, 2e3))]),
                drift_ratio=rng.choice([None, 0.5, 3.0]),
                plan_changes_since_retrain=rng.choice([None, 0, 0, 2]),
            )
            for n in range(12)
        ]
        t = Thresholds(
            min_new_events=rng.choice([0, 1, 3]),
            min_new_days=rng.choice([0, 1, 2]),
            cooldown_seconds=rng.choice([0, 60, 600]),
            busy_timeout_seconds=rng.choice([1, 900]),
            drift_ratio=rng.choice([None, 2.0]),
            force=tuple(f"S|i{n}" for n in range(12) if rng.random() < 0.1),
        )
        state = {f"S|{r['item_id']}": r for r in rows}
        ready = {k for k, r in state.items() if waiting(r)}
        # The same series for the same reasons; equal priorities may go in another order.
        assert sorted(due_among(state, ready, t, NOW), key=str) == sorted(
            due_series(rows, t, NOW), key=str
        )


def test_thresholds_are_validated_audited_and_reset(tmp_path: Path) -> None:
    store = ThresholdStore(tmp_path)
    assert store.load() == Thresholds()
    store.set({"min_new_events": "50", "force": "1|2, 3|4"}, who="ops")
    assert store.load().min_new_events == 50 and store.load().force == ("1|2", "3|4")
    with pytest.raises(StreamingError, match="nothing changed"):
        store.set({"min_new_events": "-1", "cooldown_seconds": "5"})
    with pytest.raises(StreamingError, match="Unknown threshold 'min_events'"):
        store.set({"min_events": "1"})
    with pytest.raises(StreamingError, match="not STORE\\|ITEM"):
        store.set({"force": "nobar"})
    assert store.load().cooldown_seconds == Thresholds().cooldown_seconds
    store.reset(who="ops")
    history = store.history()
    assert [(h["key"], h["old"], h["new"]) for h in history] == [
        ("min_new_events", 1, 50),
        ("force", [], ["1|2", "3|4"]),
        ("min_new_events", 50, 1),
        ("force", ["1|2", "3|4"], []),
    ]
    assert all(h["by"] == "ops" and h["at"] for h in history)


def test_a_broken_file_keeps_the_last_good_thresholds(tmp_path: Path) -> None:
    store = ThresholdStore(tmp_path)
    store.set({"min_new_events": "7"})
    store.path.write_text(json.dumps({"min_new_events": "lots"}))
    assert store.load().min_new_events == 7


def test_drift_scores_complete_days_once() -> None:
    day = date(2024, 3, 1)
    served = Served(
        3,
        Points({day + timedelta(days=k): 10.0 for k in range(5)}),
        validation_mase=0.5,
        mase_scale=2.0,
    )
    first = drift_errors(
        served, {day: 12.0, day + timedelta(days=1): 10.0}, day + timedelta(days=2)
    )
    assert [(d, a, e) for d, a, _, e in first] == [
        (day, 12.0, 1.0),
        (day + timedelta(days=1), 10.0, 0.0),
    ]
    # The next call starts after the last scored day; a day without sales is a zero actual.
    again = drift_errors(served, {}, day + timedelta(days=4))
    assert [d for d, *_ in again] == [day + timedelta(days=2), day + timedelta(days=3)]
    assert served.live_mase == pytest.approx((1.0 + 0.0 + 5.0 + 5.0) / 4)
    assert served.drift_ratio == pytest.approx((1.0 + 0.0 + 5.0 + 5.0) / 4 / 0.5)


def test_a_day_is_scored_by_the_version_that_served_it_though_retrained_before_it_ended() -> None:
    day = date(2024, 3, 1)

    def version(n: int, first: date) -> Served:
        points = Points({first + timedelta(days=k): 10.0 * n for k in range(7)})
        return Served(n, points, validation_mase=0.5, mase_scale=1.0)

    # v1 serves from ``day``; the day's first sales retrain it twice (v2, v3: from day + 1).
    v1 = version(1, day)
    v2 = succeeded(version(2, day + timedelta(days=1)), v1)
    v3 = succeeded(version(3, day + timedelta(days=1)), v2)
    assert [(s.model_version, list(s.points)) for s in lineage(v3)] == [
        (1, [day]),
        (3, list(version(3, day + timedelta(days=1)).points)),
    ]
    # The next day's sales complete ``day``: v1 scores it, v3 has no complete day yet.
    scored = [drift_errors(s, {day: 12.0}, day + timedelta(days=1)) for s in lineage(v3)]
    assert [[d for d, *_ in found] for found in scored] == [[day], []]
    assert v3.drift_ratio is None and v3.earlier is not None and v3.earlier.live_mase == 2.0
    # Once scored, v1's day is dropped (its errors are in the drift table already).
    assert succeeded(v3, v3.earlier).earlier is None


def test_a_restart_keeps_of_older_versions_only_the_days_they_served_unscored() -> None:
    import pyarrow as pa

    from streaming.served import served_rows

    day = date(2024, 3, 1)

    def rows(store: str, version: int, first: int, last: int) -> list[dict[str, Any]]:
        return [
            {
                "store_id": store,
                "item_id": "I",
                "model_version": version,
                "day": day + timedelta(days=d),
                "yhat": float(version),
                "validation_mase": 1.0,
                "mase_scale": 1.0,
            }
            for d in range(first, last + 1)
        ]

    forecasts = pa.Table.from_pylist(
        rows("B", 5, -3, 3)  # another series, earlier days: its versions stay its own
        + rows("A", 1, 1, 7)  # day 1 scored; day 2 is v3's (below): nothing of v1 left
        + rows("A", 2, 3, 9)  # replaced by v3 before any of its days
        + rows("A", 3, 2, 8)  # a newer version may start before an older one does
        + rows("C", 1, 1, 7)  # served days 1-3, day 1 scored
        + rows("C", 2, 4, 10)
    )
    drift = pa.Table.from_pylist(
        [
            {
                "store_id": s,
                "item_id": "I",
                "model_version": 1,
                "day": day + timedelta(days=1),
                "scaled_error": 0.5,
            }
            for s in ("A", "C")
        ]
    )
    kept = served_rows(forecasts, drift).to_pylist()
    by_version = [(r["store_id"], r["model_version"], (r["day"] - day).days) for r in kept]
    assert by_version == (
        [("A", 3, d) for d in range(2, 9)]
        + [("B", 5, d) for d in range(-3, 4)]
        + [("C", 1, 2), ("C", 1, 3)]
        + [("C", 2, d) for d in range(4, 11)]
    )
    assert served_rows(forecasts.slice(0, 0), drift.slice(0, 0)).num_rows == 0


def test_points_read_as_the_dict_they_were_made_from() -> None:
    day = date(2024, 3, 1)
    values = {day + timedelta(days=k): float(k) for k in (3, 0, 1, 5)}  # a gap, out of order
    points = Points(values)
    assert dict(points) == values and len(points) == 4
    assert list(points) == sorted(values) and min(points) == day
    assert day + timedelta(days=2) not in points and day - timedelta(days=1) not in points
    with pytest.raises(KeyError):
        points[day + timedelta(days=9)]
    assert not Points() and dict(Points()) == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cooldown_seconds", "inf"),
        ("cooldown_seconds", "1e400"),
        ("cooldown_seconds", "nan"),
        ("cooldown_seconds", str(31 * 86_400)),
        ("busy_timeout_seconds", "Infinity"),
        ("busy_timeout_seconds", "0.001"),
        ("drift_ratio", "nan"),
        ("drift_ratio", "-inf"),
        ("min_new_events", "1e400"),
        ("min_new_events", str(10**12)),
        ("min_new_days", "100000"),
        ("max_series_per_wave", str(10**9)),
    ],
)
def test_values_out_of_sane_bounds_are_refused(tmp_path: Path, key: str, value: str) -> None:
    store = ThresholdStore(tmp_path)
    store.set({"cooldown_seconds": "60"})
    with pytest.raises(StreamingError, match=f"nothing changed: {key}"):
        store.set({key: value})
    assert store.load() == Thresholds(cooldown_seconds=60)


def test_a_hand_edited_infinity_keeps_the_last_good_thresholds(tmp_path: Path) -> None:
    store = ThresholdStore(tmp_path)
    store.set({"cooldown_seconds": "60"})
    store.path.write_text('{"cooldown_seconds": 1e400}')
    assert store.load().cooldown_seconds == 60
    store.path.write_text('{"busy_timeout_seconds": NaN}')
    assert store.load().busy_timeout_seconds == Thresholds().busy_timeout_seconds


def test_a_file_that_cannot_be_decoded_or_read_keeps_the_last_good_thresholds(
    tmp_path: Path,
) -> None:
    store = ThresholdStore(tmp_path)
    store.set({"min_new_events": "7"})
    store.path.write_bytes(b'{"min_new_events": "\xff\xfe"}')  # not UTF-8
    assert store.load().min_new_events == 7
    store.path.unlink()
    store.path.mkdir()  # unreadable as a file
    assert store.load().min_new_events == 7
    assert store.failures == 2


def _set_many(data_dir: Path, key: str, offset: int) -> None:
    store = ThresholdStore(data_dir)
    for value in range(50):
        store.set({key: str(value + offset)}, who=key)


def test_concurrent_writers_never_lose_each_others_change(tmp_path: Path) -> None:
    import multiprocessing

    keys = ["min_new_events", "min_new_days", "cooldown_seconds", "max_series_per_wave"]
    context = multiprocessing.get_context("spawn")  # no fork of a test process with threads
    procs = [context.Process(target=_set_many, args=(tmp_path, key, 2)) for key in keys]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0] * len(keys)
    final = ThresholdStore(tmp_path).load().model_dump()
    assert {key: final[key] for key in keys} == dict.fromkeys(keys, 51)
    assert len(ThresholdStore(tmp_path).history(limit=1000)) == 50 * len(keys)
    assert not list(tmp_path.glob("*.tmp"))


def test_clearing_forced_series_keeps_what_an_operator_forced_meanwhile(tmp_path: Path) -> None:
    service, operator = ThresholdStore(tmp_path), ThresholdStore(tmp_path)
    operator.set({"force": "S1|I1,S1|I2"})
    assert service.load().force == ("S1|I1", "S1|I2")
    operator.set({"force": "S1|I1,S1|I2,S2|I9"})  # after the service read the file
    service.unforce({"S1|I1"}, who="shelfcast-service")
    assert ThresholdStore(tmp_path).load().force == ("S1|I2", "S2|I9")


def test_history_skips_lines_that_are_not_entries(tmp_path: Path) -> None:
    store = ThresholdStore(tmp_path)
    store.set({"min_new_events": "5"}, who="ops")
    with store.audit_path.open("a") as audit:
        audit.write('{"at": "2024-\n[1, 2]\n{"at": 1}\n')
    store.set({"min_new_days": "2"}, who="ops")
    assert [(h["key"], h["new"]) for h in store.history()] == [
        ("min_new_events", 5),
        ("min_new_days", 2),
    ]
    with pytest.raises(StreamingError, match="Nothing to set"):
        store.set({})
