"""Plans move forecasts before any sale: the service on a real broker, Spark, Delta and Ray.

A store whose past promotions lifted its sales gets a new promotion planned: its series'
forecasts rise on those days without a sale arriving; the plan's cancellation restores the
forecast as it was; a plan for a store nobody sells in yet is kept and used when it does.
"""

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest

from contracts import parse_forecast
from shelfcast.settings import Settings
from tests.support.events import plan, sale, store_record
from tests.support.service import ServiceProcess
from tests.support.topics import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

START = date(2024, 1, 1)  # a Monday
DAYS = 140
LIFT = 1.8


def _promotions(store: str, first: int, last: int) -> list[dict[str, Any]]:
    """A five-day promotion every four weeks (Tuesday to Saturday)."""
    return [
        plan(f"{store}-p{k}", store=store, start=(START + timedelta(days=k)).isoformat(), days=5)
        for k in range(first, last, 28)
    ]


def _sales(
    store: str, item: str, level: float, days: int, promos: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    promoted = {
        date.fromisoformat(p["start_date"]) + timedelta(days=d) for p in promos for d in range(5)
    }
    out = []
    for k in range(days):
        day = START + timedelta(days=k)
        if day.isoweekday() == 7:
            continue  # closed on Sundays: no sales
        quantity = level * (1 + 0.15 * (day.isoweekday() % 3)) * (LIFT if day in promoted else 1)
        out.append(
            sale(f"{store}-{item}-{k}", store, item, day.isoformat(), quantity=round(quantity))
        )
    return out


def _latest(settings: Settings, expect: int) -> dict[str, Any]:
    """The newest forecast per series after ``expect`` messages (the first come once the
    service has started, joined Ray and retrained: minutes on a busy machine)."""
    found: dict[str, Any] = {}
    messages = read_topic(settings, settings.topic_forecasts, expect, timeout=240)
    assert len(messages) >= expect, f"{len(messages)} of {expect} forecasts within 240 s"
    for message in messages:
        forecast = parse_forecast(message.value())
        if forecast.key not in found or forecast.model_version > found[forecast.key].model_version:
            found[forecast.key] = forecast
    return found


def _on(forecast: Any, days: set[date]) -> list[float]:
    return [p.yhat for p in forecast.points if p.date in days]


def _started(
    make_settings: Callable[..., Settings], service_on: Callable[..., ServiceProcess]
) -> tuple[Settings, ServiceProcess]:
    """The service with a 14-day horizon and the quickest group model study."""
    settings = make_settings(retrain_horizon_days=14)
    svc = service_on(
        settings,
        SHELFCAST_RETRAIN_HORIZON_DAYS="14",
        SHELFCAST_RETRAIN_GROUP_COLD_TRIALS="1",
        SHELFCAST_RETRAIN_GROUP_WARM_TRIALS="0",
        SHELFCAST_RETRAIN_GROUP_FOLDS="2",
    )
    svc.start()
    return settings, svc


def test_a_plan_moves_the_forecast_before_any_sale_and_its_cancellation_restores_it(
    make_settings: Callable[..., Settings],
    service_on: Callable[..., ServiceProcess],
    produce: Callable[..., int],
) -> None:
    settings, svc = _started(make_settings, service_on)
    past = _promotions("S1", 1, DAYS - 14)
    produce(settings, [store_record("S1")], topic=settings.topic_pos_stores)
    produce(settings, past, topic=settings.topic_pos_plans)
    produce(
        settings,
        _sales("S1", "I1", 20, DAYS, past) + _sales("S1", "I2", 8, DAYS, past),
    )
    before = _latest(settings, 2)
    assert set(before) == {"S1|I1", "S1|I2"}, svc.log()

    # A promotion planned in the horizon (a week after the last day), no sale sent.
    first = START + timedelta(days=DAYS + 7)
    promo_days = {first + timedelta(days=d) for d in range(5)}
    produce(
        settings,
        [plan("S1-new", store="S1", start=first.isoformat(), days=5)],
        topic=settings.topic_pos_plans,
    )
    moved = _latest(settings, 4)
    for key in before:
        old, new = before[key], moved[key]
        assert new.model_version > old.model_version, svc.log()
        assert new.data_through == old.data_through  # no new data: the plan moved it
        assert sum(_on(new, promo_days)) > 1.15 * sum(_on(old, promo_days)), (key, new.family)

    # Cancelled (a higher revision): the forecast is what it was before the plan.
    produce(
        settings,
        [plan("S1-new", revision=2, store="S1", start=first.isoformat(), days=5, cancelled=True)],
        topic=settings.topic_pos_plans,
    )
    restored = _latest(settings, 6)
    for key in before:
        assert restored[key].model_version > moved[key].model_version
        assert _on(restored[key], promo_days) == pytest.approx(
            _on(before[key], promo_days), rel=0.02
        )


def test_a_plan_for_a_store_without_series_is_kept_and_used_when_it_sells(
    make_settings: Callable[..., Settings],
    service_on: Callable[..., ServiceProcess],
    produce: Callable[..., int],
) -> None:
    settings, svc = _started(make_settings, service_on)
    past = _promotions("S1", 1, DAYS - 14)
    first = START + timedelta(days=DAYS + 7)
    promo_days = {first + timedelta(days=d) for d in range(5)}
    # S2 is planned before it sells anything: the plan waits in the table.
    produce(settings, [store_record("S1"), store_record("S2")], topic=settings.topic_pos_stores)
    produce(
        settings,
        [*past, plan("S2-new", store="S2", start=first.isoformat(), days=5)],
        topic=settings.topic_pos_plans,
    )
    produce(settings, _sales("S1", "I1", 20, DAYS, past))
    assert set(_latest(settings, 1)) == {"S1|I1"}, svc.log()
    # S2 opens: five weeks of sales, no promotion yet.
    opened = [
        e
        for e in _sales("S2", "I1", 20, DAYS, [])
        if e["sold_at"] >= (START + timedelta(days=DAYS - 35)).isoformat()
    ]
    produce(settings, opened)
    new = _latest(settings, 2)["S2|I1"]
    ordinary = {p.date for p in new.points if p.date not in promo_days and p.yhat > 0}
    same_weekdays = [
        p.yhat
        for p in new.points
        if p.date in ordinary and p.date.isoweekday() in {d.isoweekday() for d in promo_days}
    ]
    assert sum(_on(new, promo_days)) / len(promo_days) > 1.15 * (
        sum(same_weekdays) / len(same_weekdays)
    ), new
