"""Closures on constructed series: a busy store closed on Sundays and holidays, a slow mover."""

from datetime import date, timedelta

import numpy as np

from retrain.kernel.calendar import CalendarConfig, classify, fill_closed, holiday_names
from retrain.kernel.plans import Plan, StoreInfo, day_plan
from retrain.kernel.prepare import prepare
from retrain.kernel.series import History
from tests.support.series import demand

GERMANY = CalendarConfig(country="DE")
START = date(2022, 1, 3)  # a Monday


def busy_store(days: int) -> np.ndarray:
    """~100 a day, closed on Sundays and on German public holidays."""
    values = demand(days, level=100.0)
    names = holiday_names(GERMANY, START, START + timedelta(days=days))
    for k in range(days):
        day = START + timedelta(days=k)
        if day.weekday() == 6 or day in names:
            values[k] = 0.0
    return values


def test_a_busy_series_zero_days_are_closures_and_recur_in_the_forecast() -> None:
    days = 700
    values = busy_store(days)
    closures = classify(START, values, 28, GERMANY)
    assert closures.busy
    assert np.array_equal(closures.closed, values == 0)
    future = [START + timedelta(days=days + k) for k in range(28)]
    sundays = np.array([d.weekday() == 6 for d in future])
    assert closures.future_closed[sundays].all()
    holidays = holiday_names(GERMANY, future[0], future[-1])
    expected = sundays | np.array([d in holidays for d in future])
    assert np.array_equal(closures.future_closed, expected)


def test_a_store_that_declares_its_plans_reopens_when_they_say_after_a_long_closure() -> None:
    days = 700
    values = busy_store(days)
    values[-100:] = 0.0  # shut for the last 100 days
    # Guessed from its last weeks, every day ahead stays shut ...
    assert classify(START, values, 28, GERMANY).future_closed.all()
    # ... but a store that publishes its opening weekdays and closures is taken at its word.
    declared = classify(START, values, 28, GERMANY, declared=True)
    future = [START + timedelta(days=days + k) for k in range(28)]
    holidays = holiday_names(GERMANY, future[0], future[-1])
    ahead = zip(future, declared.future_closed, strict=True)
    assert not any(shut for day, shut in ahead if day not in holidays)


def test_a_declared_plan_too_short_for_the_horizon_leaves_closures_to_the_guess() -> None:
    days = 700
    values = busy_store(days)
    store = StoreInfo("S", "DE", None, (1, 2, 3, 4, 5, 6))
    plans = [Plan("promotion", START, START + timedelta(days=6))]
    future = [START + timedelta(days=days + k) for k in range(28)]
    sundays = np.array([d.weekday() == 6 for d in future])
    history = History(START, values)
    for length, kind in ((days + 28, "covers the horizon"), (days + 5, "too short")):
        plan = day_plan(START, length, plans, store, GERMANY)
        assert plan.declares_closures
        _, closures = prepare(history, 28, GERMANY, plan=plan)
        # Sundays are closed ahead either way: by the plan's weekdays, or by the guess.
        assert closures.future_closed[sundays].all(), kind


def test_a_holiday_the_store_opened_on_last_time_is_not_forecast_closed() -> None:
    days = 700
    values = busy_store(days)
    names = holiday_names(GERMANY, START, START + timedelta(days=days + 28))
    christmas = [d for d, n in names.items() if "Christmas" in n and d < START + timedelta(days)]
    for day in christmas:  # it opened on both Christmas days before
        values[(day - START).days] = 100.0
    # Forecast from just before the next Christmas.
    origin = max(d for d in christmas if d.month == 12 and d.day == 25)
    cut = (origin - START).days + 340
    closures = classify(START, values[:cut], 28, GERMANY)
    future = [START + timedelta(days=cut + k) for k in range(28)]
    checked = [
        k
        for k, day in enumerate(future)
        if day in names and "Christmas" in names[day] and day.weekday() != 6
    ]
    assert checked and not closures.future_closed[checked].any()


def test_a_slow_mover_keeps_its_zeros() -> None:
    values = np.random.default_rng(0).poisson(0.6, 500).astype(float)
    closures = classify(START, values, 28, GERMANY)
    assert not closures.busy and not closures.any and not closures.future_closed.any()


def test_the_rule_is_a_setting() -> None:
    values = np.random.default_rng(0).poisson(3.0, 500).astype(float)  # zeros ~5 % of days
    assert not classify(START, values, 28, CalendarConfig()).busy
    assert classify(START, values, 28, CalendarConfig(closure_min_level=2.0)).busy


def test_closed_days_are_filled_from_nearby_open_days() -> None:
    values = np.array([10.0] * 7 + [12.0] * 7 + [14.0] * 7)
    closed = np.zeros(21, dtype=bool)
    closed[8] = True
    filled = fill_closed(values, closed)
    assert filled[8] == 12.0  # the same weekday a week before and after: 10 and 14
    assert np.array_equal(np.delete(filled, 8), np.delete(values, 8))
