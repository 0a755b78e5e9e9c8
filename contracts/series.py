"""The series key: ``"<store_id>|<item_id>"``, the one spelling of a series everywhere.

It keys the Kafka records of ``pos_sale`` v1 and ``forecast`` v1, and names a series in the
tables, the CLI and the console. Strict both ways: neither part may be empty or hold ``|``
(``pos_sale`` v1 refuses such ids), so a key has exactly one ``|`` and splits one way only;
``"A|B|C"`` is not a key.
"""

from contracts.errors import SeriesKeyError

__all__ = ["SEPARATOR", "parse_series_key", "series_key"]

SEPARATOR = "|"


def series_key(store_id: str, item_id: str) -> str:
    """The key of the series ``(store_id, item_id)``; :class:`SeriesKeyError` when either
    part is empty or holds ``|``."""
    if not store_id or not item_id or SEPARATOR in store_id or SEPARATOR in item_id:
        raise SeriesKeyError(
            f"({store_id!r}, {item_id!r}) cannot name a series: store and item ids are "
            f"non-empty and hold no {SEPARATOR!r}"
        )
    return f"{store_id}{SEPARATOR}{item_id}"


def parse_series_key(key: str) -> tuple[str, str]:
    """``(store_id, item_id)`` of ``"STORE|ITEM"``; :class:`SeriesKeyError` unless ``key``
    has exactly one ``|`` with a non-empty part on each side."""
    store_id, sep, item_id = key.partition(SEPARATOR)
    if not sep or not store_id or not item_id or SEPARATOR in item_id:
        raise SeriesKeyError(
            f"{key!r} is not a series key: write STORE{SEPARATOR}ITEM, e.g. "
            f"S1{SEPARATOR}I7 (neither part empty, one {SEPARATOR!r} only)"
        )
    return store_id, item_id
