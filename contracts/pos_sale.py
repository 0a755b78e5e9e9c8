"""Contract ``pos_sale`` v1: one sale line sent by a POS system to ``pos.sales``."""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from contracts._reasons import explain
from contracts.series import series_key

__all__ = [
    "CONTRACT",
    "PosSale",
    "Rejection",
    "validate_pos_sale",
]

CONTRACT = "pos_sale/v1"


class PosSale(BaseModel):
    """A valid ``pos_sale`` v1 event. Unknown fields are dropped, not refused."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    event_id: str = Field(min_length=1, max_length=200)
    store_id: str = Field(min_length=1, max_length=100, pattern=r"^[^|]+$")
    item_id: str = Field(min_length=1, max_length=100, pattern=r"^[^|]+$")
    sold_at: AwareDatetime
    quantity: float
    unit_price: float | None = Field(default=None, ge=0)

    @field_validator("quantity", "unit_price")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a raw record is not a valid event, in words an operator understands."""

    reason: str


def validate_pos_sale(
    key: bytes | None,
    value: bytes | None,
    *,
    reference_time: datetime,
    max_bytes: int,
    max_future: timedelta,
) -> PosSale | Rejection:
    """Turn a raw Kafka record into a :class:`PosSale` or a :class:`Rejection`.

    ``reference_time`` is the record's Kafka timestamp, so that a replayed record gets the
    same verdict as the first time.
    """
    if value is None or len(value) == 0:
        return Rejection("empty message: a pos_sale v1 event needs a JSON object as its value")
    if len(value) > max_bytes:
        return Rejection(
            f"message is {len(value)} bytes, over the limit of {max_bytes} bytes "
            "(raise SHELFCAST_INGEST_MAX_EVENT_BYTES if such events are legitimate)"
        )
    try:
        sale = PosSale.model_validate_json(value)
    except ValidationError as exc:
        return Rejection(_explain(value, exc))
    if sale.sold_at - reference_time > max_future:
        ahead = (sale.sold_at - reference_time).total_seconds() / 3600
        return Rejection(
            f"sold_at {sale.sold_at.isoformat()} is {ahead:.1f} h after the record was produced; "
            f"more than {max_future.total_seconds() / 3600:.0f} h in the future "
            "(check the POS clock and time zone)"
        )
    if key:
        expected = series_key(sale.store_id, sale.item_id)
        if key != expected.encode():
            return Rejection(
                f"Kafka key {key[:100]!r} does not match the event's series {expected!r}; "
                "the producer must key each event by '<store_id>|<item_id>' or send no key"
            )
    return sale


def _explain(value: bytes, exc: ValidationError) -> str:
    """Slow path: say precisely what is wrong with a record that failed validation."""
    return explain(value, exc, "a pos_sale v1 event")
