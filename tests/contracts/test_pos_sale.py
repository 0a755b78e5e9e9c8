import json
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

import contracts
from contracts import PosSale, Rejection, load_schema, validate_pos_sale

NOW = datetime(2024, 3, 4, 12, tzinfo=UTC)
LIMITS = {"reference_time": NOW, "max_bytes": 4096, "max_future": timedelta(days=1)}
GOOD = {
    "event_id": "e1",
    "store_id": "S1",
    "item_id": "I1",
    "sold_at": "2024-03-04T10:00:00+01:00",
    "quantity": 2,
    "unit_price": 1.5,
}


def check(value: bytes, key: bytes | None = b"S1|I1") -> PosSale | Rejection:
    return validate_pos_sale(key, value, **LIMITS)


def test_public_names_are_exported() -> None:
    for name in contracts.__all__:
        assert hasattr(contracts, name)
    assert set(contracts.__all__) >= {"PosSale", "validate_pos_sale", "DeadLetter", "load_schema"}


def test_valid_event_keeps_known_fields_and_drops_extras() -> None:
    sale = check(json.dumps({**GOOD, "loyalty_id": "x"}).encode())
    assert isinstance(sale, PosSale)
    assert sale.quantity == 2.0 and sale.sold_at.utcoffset() == timedelta(hours=1)
    assert not hasattr(sale, "loyalty_id")


def test_missing_key_is_allowed_and_returns_are_negative() -> None:
    sale = check(json.dumps({**GOOD, "quantity": -1}).encode(), key=None)
    assert isinstance(sale, PosSale) and sale.quantity == -1


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "empty message"),
        (b"[1, 2]", "is a list"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "store_id"}).encode(),
            "missing required field 'store_id'",
        ),
        (json.dumps({**GOOD, "quantity": "2"}).encode(), "field 'quantity'"),
        (json.dumps({**GOOD, "store_id": 7}).encode(), "field 'store_id'"),
        (json.dumps({**GOOD, "unit_price": -0.5}).encode(), "greater than or equal to 0"),
        (json.dumps({**GOOD, "sold_at": "2024-03-04T10:00:00"}).encode(), "no UTC offset"),
        (json.dumps({**GOOD, "sold_at": "2024-03-07T10:00:00+00:00"}).encode(), "in the future"),
        (json.dumps({**GOOD, "pad": "x" * 5000}).encode(), "over the limit"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(value: bytes, words: str) -> None:
    verdict = check(value)
    assert isinstance(verdict, Rejection)
    assert words in verdict.reason


def test_key_that_names_another_series_is_rejected() -> None:
    verdict = check(json.dumps(GOOD).encode(), key=b"S2|I9")
    assert isinstance(verdict, Rejection) and "does not match" in verdict.reason


@pytest.mark.parametrize(
    "doc",
    [
        GOOD,
        {**GOOD, "quantity": "2"},
        {**GOOD, "unit_price": -1},
        {k: v for k, v in GOOD.items() if k != "event_id"},
        {**GOOD, "store_id": "a|b"},
        {**GOOD, "unit_price": None},
        {**GOOD, "extra": [1]},
    ],
)
def test_model_agrees_with_the_json_schema(doc: dict[str, object]) -> None:
    schema_ok = jsonschema.Draft202012Validator(load_schema("pos_sale", 1)).is_valid(doc)
    model_ok = isinstance(check(json.dumps(doc).encode(), key=None), PosSale)
    assert schema_ok == model_ok
