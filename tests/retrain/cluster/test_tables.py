"""The series tables' rows as pure state: parts, give-back, late rows, the bound."""

from retrain.cluster.tables import SeriesTables


def rows(n: int, first: int = 0) -> list[dict[str, int]]:
    return [{"n": k} for k in range(first, first + n)]


def test_full_parts_are_scheduled_once_and_taken_in_order() -> None:
    tables = SeriesTables(part_rows=3)
    tables.open("r")
    assert [tables.add("r", row) for row in rows(5)] == ["held", "held", "full", "held", "held"]
    assert tables.take("r") == (0, rows(3))
    assert tables.add("r", {"n": 5}) == "held"  # still scheduled: the taker is at work
    assert tables.take("r") == (1, rows(3, 3))
    assert tables.take("r") is None  # nothing full: no longer scheduled
    assert [tables.add("r", row) for row in rows(3, 6)] == ["held", "held", "full"]


def test_a_part_not_stored_goes_back_in_front_and_waits_before_it_is_tried_again() -> None:
    tables = SeriesTables(part_rows=2)
    tables.open("r")
    for row in rows(2):
        tables.add("r", row)
    number, part = tables.take("r") or (0, [])
    tables.add("r", {"n": 2})
    tables.give_back("r", number, part)
    tables.failed("r", retry_in=60)
    assert tables.add("r", {"n": 3}) == "held"  # not a try a row during an outage
    assert tables.close("r") == (0, rows(4))


def test_rows_of_a_closed_run_are_late_until_it_is_given_back() -> None:
    tables = SeriesTables(part_rows=10)
    tables.open("r")
    tables.add("r", {"n": 0})
    assert tables.close("r") == (0, rows(1))
    assert tables.add("r", {"n": 1}) == "late"
    tables.give_back("r", 3, rows(1))  # closing failed: open again, numbering kept
    assert tables.add("r", {"n": 1}) == "held"
    assert tables.close("r") == (3, rows(2))
    assert tables.add("unknown", {"n": 0}) == "late"


def test_past_the_bound_the_oldest_rows_of_the_oldest_run_go() -> None:
    tables = SeriesTables(part_rows=100, max_rows=4)
    tables.open("old")
    tables.open("new")
    for row in rows(3):
        tables.add("old", row)
    for row in rows(3, 10):
        tables.add("new", row)
    assert tables.dropped == 2
    assert tables.close("old") == (0, rows(1, 2))
    assert tables.close("new") == (0, rows(3, 10))
