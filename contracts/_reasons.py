"""Why a raw record is not a valid message of a contract, in words an operator understands."""

import json
from datetime import datetime, timedelta

from pydantic import ValidationError

__all__ = ["explain", "too_far_ahead", "too_large"]


def too_large(size: int, max_bytes: int) -> str:
    return (
        f"message is {size} bytes, over the limit of {max_bytes} bytes "
        "(raise SHELFCAST_INGEST_MAX_EVENT_BYTES if such events are legitimate)"
    )


def too_far_ahead(name: str, at: datetime, reference: datetime, max_future: timedelta) -> str:
    ahead = (at - reference).total_seconds() / 3600
    return (
        f"{name} {at.isoformat()} is {ahead:.1f} h after the record was produced; "
        f"more than {max_future.total_seconds() / 3600:.0f} h in the future "
        "(check the producer's clock and time zone)"
    )


def explain(value: bytes, exc: ValidationError, what: str) -> str:
    """Slow path: say precisely what is wrong with a record that failed validation as
    ``what`` (e.g. "a pos_sale v1 event")."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as err:
        return (
            f"not UTF-8 text: byte 0x{value[err.start]:02x} at position {err.start}; "
            f"{what} is UTF-8 encoded JSON"
        )
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
    if not isinstance(doc, dict):
        return f"the JSON value is a {type(doc).__name__}, but {what} is an object"
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "event"
        if error["type"] == "missing":
            problems.append(f"missing required field '{field}'")
        elif error["type"] == "timezone_aware":
            problems.append(
                f"field '{field}' has no UTC offset; send e.g. 2024-05-01T10:15:00+02:00"
            )
        elif not error["loc"]:  # a rule across fields
            problems.append(str(error["msg"]).removeprefix("Value error, "))
        else:
            shown = json.dumps(error.get("input"), default=str)[:60]
            # Our own rules' words as written; pydantic's start with a capital letter.
            said = str(error["msg"])
            said = said.removeprefix("Value error, ") if error["type"] == "value_error" else said
            problems.append(f"field '{field}': {said[:1].lower()}{said[1:]} (got {shown})")
    return "; ".join(problems)
