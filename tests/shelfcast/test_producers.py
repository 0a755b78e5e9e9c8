from datetime import date
from pathlib import Path

import pytest

from shelfcast.pos.replay import read_daily_csv, replay_events, split_units
from shelfcast.pos.simulate import SimulationSpec, simulate_events


@pytest.mark.parametrize(("units", "n"), [(0, 4), (1, 4), (7, 4), (100, 3), (2.5, 4)])
def test_split_units_sums_exactly_within_n_events(units: float, n: int) -> None:
    parts = split_units(units, n)
    assert len(parts) <= n and abs(sum(parts) - units) < 1e-9
    assert all(p > 0 for p in parts)


def test_replay_is_in_date_order_inclusive_and_deterministic(tmp_path: Path) -> None:
    csv = tmp_path / "daily.csv"
    csv.write_text(
        "date,store,item,sales\n"
        "2024-01-02,1,1,5\n2024-01-01,1,1,3\n2024-01-01,2,1,0\n2024-01-03,1,1,9\n"
    )
    frame = read_daily_csv(csv, date(2024, 1, 1), date(2024, 1, 2))
    events = list(replay_events(frame, events_per_day=2))
    assert [e["sold_at"][:10] for e in events] == ["2024-01-01"] * 2 + ["2024-01-02"] * 2
    assert sum(e["quantity"] for e in events if e["sold_at"].startswith("2024-01-02")) == 5
    assert events == list(replay_events(frame, events_per_day=2))
    assert len({e["event_id"] for e in events}) == len(events)


def test_simulator_is_seeded_and_has_returns_retries_and_zero_days() -> None:
    spec = SimulationSpec(stores=2, items=10, days=21, seed=3)
    events = list(simulate_events(spec))
    assert events == list(simulate_events(spec))
    ids = [e["event_id"] for e in events]
    assert len(ids) > len(set(ids))  # POS retries resend an id
    assert any(e["quantity"] < 0 for e in events)  # returns
    days_sold = {(e["store_id"], e["item_id"], e["sold_at"][:10]) for e in events}
    assert len(days_sold) < 2 * 10 * 21  # slow movers have zero days
