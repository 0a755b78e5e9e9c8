"""Contracts plan v1 and store v1: the typed models, their reasons, and their JSON Schemas."""

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jsonschema
import pytest

import contracts
from contracts import (
    Plan,
    Rejection,
    Store,
    load_schema,
    validate_plan,
    validate_store,
)

NOW = datetime(2024, 3, 4, 12, tzinfo=UTC)
LIMITS: dict[str, Any] = {"reference_time": NOW, "max_bytes": 4096, "max_future": timedelta(days=1)}
PLAN = {
    "plan_id": "promo-7",
    "revision": 2,
    "store_id": "S1",
    "item_id": "*",
    "start_date": "2024-04-01",
    "end_date": "2024-04-07",
    "kind": "promotion",
    "depth": 0.2,
    "published_at": "2024-03-04T09:00:00+01:00",
}
STORE = {
    "store_id": "S1",
    "revision": 3,
    "country": "DE",
    "subdivision": "NW",
    "open_weekdays": [6, 1, 2, 3, 4, 5],
    "store_type": "a",
    "assortment": "c",
    "attributes": {"promo2": True, "size_m2": 420, "format": "city"},
    "published_at": "2024-03-04T09:00:00Z",
}


def plan(doc: dict[str, Any], key: bytes | None = None) -> Plan | Rejection:
    return validate_plan(key, json.dumps(doc).encode(), **LIMITS)


def store(doc: dict[str, Any], key: bytes | None = None) -> Store | Rejection:
    return validate_store(key, json.dumps(doc).encode(), **LIMITS)


def test_plan_and_store_names_are_exported() -> None:
    expected = {
        "PLAN_V1",
        "STORE_V1",
        "EVERY_ITEM",
        "PLAN_KINDS",
        "Plan",
        "PlanKind",
        "Store",
        "validate_plan",
        "validate_store",
    }
    assert expected <= set(contracts.__all__)
    for name in contracts.__all__:
        assert hasattr(contracts, name), name
    assert (contracts.PLAN_V1, contracts.STORE_V1) == ("plan/v1", "store/v1")


def test_a_valid_plan_keeps_its_fields_and_drops_extras() -> None:
    got = plan({**PLAN, "owner": "planning"}, key=b"promo-7")
    assert isinstance(got, Plan)
    assert (got.start_date, got.end_date, got.kind, got.depth) == (
        date(2024, 4, 1),
        date(2024, 4, 7),
        "promotion",
        0.2,
    )
    assert got.every_item and not got.cancelled and got.revision == 2
    assert not hasattr(got, "owner")


def test_a_price_plan_and_a_cancellation_are_valid() -> None:
    priced = plan({**PLAN, "kind": "price", "depth": None, "unit_price": 1.99, "item_id": "I1"})
    assert isinstance(priced, Plan) and priced.unit_price == 1.99 and not priced.every_item
    cancelled = plan({**PLAN, "revision": 3, "cancelled": True})
    assert isinstance(cancelled, Plan) and cancelled.cancelled


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({**PLAN, "kind": "sale"}, "field 'kind'"),
        ({**PLAN, "revision": "2"}, "field 'revision'"),
        ({**PLAN, "revision": -1}, "field 'revision'"),
        ({k: v for k, v in PLAN.items() if k != "plan_id"}, "missing required field 'plan_id'"),
        ({**PLAN, "end_date": "2024-03-31"}, "end_date 2024-03-31 is before start_date"),
        ({**PLAN, "end_date": "2027-01-01"}, "more than 731"),
        ({**PLAN, "depth": 1.5}, "field 'depth'"),
        ({**PLAN, "kind": "closure"}, "depth is for promotions only"),
        ({**PLAN, "kind": "price", "depth": None}, "a price plan needs unit_price"),
        ({**PLAN, "unit_price": 2.0}, "unit_price is for price plans only"),
        ({**PLAN, "store_id": "a|b"}, "field 'store_id'"),
        ({**PLAN, "start_date": "04/01/2024"}, "field 'start_date'"),
        ({**PLAN, "published_at": "2024-03-04T09:00:00"}, "no UTC offset"),
        ({**PLAN, "published_at": "2024-03-09T09:00:00Z"}, "in the future"),
        ({**PLAN, "pad": "x" * 5000}, "over the limit"),
    ],
)
def test_a_bad_plan_is_rejected_with_a_reason(doc: dict[str, Any], words: str) -> None:
    verdict = plan(doc)
    assert isinstance(verdict, Rejection), verdict
    assert words in verdict.reason, verdict.reason


def test_a_plan_keyed_by_another_id_is_rejected() -> None:
    verdict = plan(PLAN, key=b"promo-8")
    assert isinstance(verdict, Rejection) and "plan_id" in verdict.reason
    assert isinstance(validate_plan(None, b"", **LIMITS), Rejection)
    assert "not valid JSON" in str(validate_plan(None, b"{x", **LIMITS))


def test_a_valid_store_sorts_its_weekdays() -> None:
    got = store(STORE, key=b"S1")
    assert isinstance(got, Store)
    assert got.open_weekdays == (1, 2, 3, 4, 5, 6)
    assert got.attributes == {"promo2": True, "size_m2": 420, "format": "city"}
    minimal = store(
        {k: STORE[k] for k in ("store_id", "revision", "country", "open_weekdays")}
        | {"published_at": STORE["published_at"]}
    )
    assert isinstance(minimal, Store) and minimal.subdivision is None and minimal.attributes == {}


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({**STORE, "country": "Germany"}, "field 'country'"),
        ({**STORE, "country": "de"}, "field 'country'"),
        ({**STORE, "open_weekdays": [0, 1]}, "ISO numbers"),
        ({**STORE, "open_weekdays": [1, 1]}, "listed twice"),
        ({**STORE, "open_weekdays": "1-6"}, "field 'open_weekdays'"),
        ({**STORE, "attributes": {"x": [1]}}, "field 'attributes.x"),
        ({**STORE, "attributes": {"": 1}}, "1-100 characters"),
        ({k: v for k, v in STORE.items() if k != "country"}, "missing required field 'country'"),
        ({**STORE, "revision": 1.5}, "field 'revision'"),
    ],
)
def test_a_bad_store_is_rejected_with_a_reason(doc: dict[str, Any], words: str) -> None:
    verdict = store(doc)
    assert isinstance(verdict, Rejection), verdict
    assert words in verdict.reason, verdict.reason


def test_a_store_keyed_by_another_id_is_rejected() -> None:
    verdict = store(STORE, key=b"S2")
    assert isinstance(verdict, Rejection) and "store_id" in verdict.reason


@pytest.mark.parametrize(
    "doc",
    [
        PLAN,
        {**PLAN, "cancelled": True},
        {**PLAN, "kind": "price", "depth": None, "unit_price": 3.5},
        {**PLAN, "kind": "price", "depth": None},
        {**PLAN, "kind": "closure", "depth": None},
        {**PLAN, "kind": "closure"},
        {**PLAN, "kind": "school_holiday", "unit_price": 1.0, "depth": None},
        {**PLAN, "revision": "1"},
        {**PLAN, "item_id": "a|b"},
        {**PLAN, "depth": 2},
        {**PLAN, "extra": {"x": 1}},
        {k: v for k, v in PLAN.items() if k != "published_at"},
    ],
)
def test_the_plan_model_agrees_with_its_json_schema(doc: dict[str, Any]) -> None:
    schema_ok = jsonschema.Draft202012Validator(load_schema("plan", 1)).is_valid(doc)
    model_ok = isinstance(plan(doc), Plan)
    assert schema_ok == model_ok


@pytest.mark.parametrize(
    "doc",
    [
        STORE,
        {**STORE, "subdivision": None, "store_type": None, "attributes": {}},
        {**STORE, "open_weekdays": []},
        {**STORE, "open_weekdays": [8]},
        {**STORE, "open_weekdays": [2, 2]},
        {**STORE, "country": "DEU"},
        {**STORE, "attributes": {"a": None}},
        {**STORE, "store_id": ""},
        {**STORE, "extra": 1},
    ],
)
def test_the_store_model_agrees_with_its_json_schema(doc: dict[str, Any]) -> None:
    schema_ok = jsonschema.Draft202012Validator(load_schema("store", 1)).is_valid(doc)
    model_ok = isinstance(store(doc), Store)
    assert schema_ok == model_ok
