"""The series key, both ways: one spelling, and strict."""

import pytest

import contracts
from contracts import ContractError, SeriesKeyError, parse_series_key, series_key


def test_a_key_is_the_two_ids_around_one_bar_and_parses_back() -> None:
    assert series_key("S1", "I7") == "S1|I7"
    assert parse_series_key("S1|I7") == ("S1", "I7")
    assert parse_series_key(series_key("store 1", "item-7")) == ("store 1", "item-7")


@pytest.mark.parametrize("key", ["A|B|C", "A||B", "|B", "A|", "|", "AB", ""])
def test_anything_but_one_bar_between_two_ids_is_not_a_key(key: str) -> None:
    with pytest.raises(SeriesKeyError, match=r"is not a series key: write STORE\|ITEM"):
        parse_series_key(key)


@pytest.mark.parametrize(
    ("store_id", "item_id"), [("A|B", "C"), ("A", "B|C"), ("", "C"), ("A", "")]
)
def test_ids_that_would_make_an_ambiguous_key_make_none(store_id: str, item_id: str) -> None:
    with pytest.raises(SeriesKeyError, match="cannot name a series"):
        series_key(store_id, item_id)


def test_the_error_is_a_contract_error_and_a_value_error() -> None:
    # ValueError: pydantic validators (the thresholds' force list) report it as a bad value.
    assert issubclass(SeriesKeyError, ContractError) and issubclass(SeriesKeyError, ValueError)
    assert {"series_key", "parse_series_key", "SeriesKeyError"} <= set(contracts.__all__)
