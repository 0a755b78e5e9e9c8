"""Contract ``store`` v1: a store's master data, sent to ``pos.stores``: where it is (for
its public holidays), the weekdays it normally opens, and attributes the models may use.

The highest ``revision`` of a store wins.
"""

import math
from datetime import datetime, timedelta

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from contracts._reasons import explain, too_far_ahead, too_large
from contracts.pos_sale import Rejection

__all__ = ["CONTRACT", "MAX_ATTRIBUTES", "Store", "validate_store"]

CONTRACT = "store/v1"
MAX_ATTRIBUTES = 50


class Store(BaseModel):
    """A valid ``store`` v1 message. Unknown fields are dropped, not refused."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    store_id: str = Field(min_length=1, max_length=100, pattern=r"^[^|]+$")
    revision: int = Field(ge=0, le=2**63 - 1)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    subdivision: str | None = Field(default=None, min_length=1, max_length=40)
    open_weekdays: tuple[int, ...] = Field(max_length=7)
    store_type: str | None = Field(default=None, min_length=1, max_length=50)
    assortment: str | None = Field(default=None, min_length=1, max_length=50)
    attributes: dict[str, str | bool | int | float] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES
    )
    published_at: AwareDatetime

    @field_validator("open_weekdays")
    @classmethod
    def _iso_weekdays(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= d <= 7 for d in days):
            raise ValueError("weekdays are ISO numbers, 1 (Monday) to 7 (Sunday)")
        if len(set(days)) != len(days):
            raise ValueError("a weekday is listed twice")
        return tuple(sorted(days))

    @field_validator("attributes")
    @classmethod
    def _attributes(
        cls, values: dict[str, str | bool | int | float]
    ) -> dict[str, str | bool | int | float]:
        for name, value in values.items():
            if not 1 <= len(name) <= 100:
                raise ValueError(f"attribute name {name[:100]!r} must have 1-100 characters")
            if isinstance(value, str) and len(value) > 1_000:
                raise ValueError(f"attribute {name!r} is over 1000 characters")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"attribute {name!r} must be a finite number")
        return values


def validate_store(
    key: bytes | None,
    value: bytes | None,
    *,
    reference_time: datetime,
    max_bytes: int,
    max_future: timedelta,
) -> Store | Rejection:
    """Turn a raw Kafka record into a :class:`Store` or a :class:`Rejection` (the key, when
    there is one, must be the ``store_id``)."""
    if value is None or len(value) == 0:
        return Rejection("empty message: a store v1 message needs a JSON object as its value")
    if len(value) > max_bytes:
        return Rejection(too_large(len(value), max_bytes))
    try:
        store = Store.model_validate_json(value)
    except ValidationError as exc:
        return Rejection(explain(value, exc, "a store v1 message"))
    if store.published_at - reference_time > max_future:
        return Rejection(
            too_far_ahead("published_at", store.published_at, reference_time, max_future)
        )
    if key and key != store.store_id.encode():
        return Rejection(
            f"Kafka key {key[:100]!r} does not match the store's store_id {store.store_id!r}; "
            "key each store record by its store_id or send no key"
        )
    return store
