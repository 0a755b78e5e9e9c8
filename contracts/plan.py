"""Contract ``plan`` v1: a planned promotion, closure, school holiday or price, sent to
``pos.plans`` by planners ahead of the days it covers.

A plan is identified by ``plan_id``; its highest ``revision`` wins, and a revision may cancel
it (``cancelled``: the plan is kept, marked cancelled). ``item_id`` ``*`` means every item of
the store.
"""

import math
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts._reasons import explain, too_far_ahead, too_large
from contracts.pos_sale import Rejection

__all__ = [
    "CONTRACT",
    "EVERY_ITEM",
    "MAX_PLAN_DAYS",
    "PLAN_KINDS",
    "Plan",
    "PlanKind",
    "validate_plan",
]

CONTRACT = "plan/v1"
EVERY_ITEM = "*"
MAX_PLAN_DAYS = 731  # from start_date to end_date, both counted: two years

PlanKind = Literal["promotion", "closure", "school_holiday", "price"]
PLAN_KINDS: tuple[PlanKind, ...] = ("promotion", "closure", "school_holiday", "price")


class Plan(BaseModel):
    """A valid ``plan`` v1 message. Unknown fields are dropped, not refused."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    plan_id: str = Field(min_length=1, max_length=200)
    revision: int = Field(ge=0, le=2**63 - 1)
    cancelled: bool = False
    store_id: str = Field(min_length=1, max_length=100, pattern=r"^[^|]+$")
    item_id: str = Field(min_length=1, max_length=100, pattern=r"^[^|]+$")
    start_date: date
    end_date: date
    kind: PlanKind
    depth: float | None = Field(default=None, ge=0, le=1)
    unit_price: float | None = Field(default=None, ge=0)
    published_at: AwareDatetime

    @field_validator("depth", "unit_price")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Plan":
        if self.end_date < self.start_date:
            raise ValueError(
                f"end_date {self.end_date} is before start_date {self.start_date} "
                "(both days are included)"
            )
        if (self.end_date - self.start_date).days + 1 > MAX_PLAN_DAYS:
            raise ValueError(
                f"the plan covers {(self.end_date - self.start_date).days + 1} days, more than "
                f"{MAX_PLAN_DAYS}; split it into several plans"
            )
        if self.depth is not None and self.kind != "promotion":
            raise ValueError(f"depth is for promotions only, not for a {self.kind} plan")
        if self.kind == "price" and self.unit_price is None:
            raise ValueError("a price plan needs unit_price")
        if self.unit_price is not None and self.kind != "price":
            raise ValueError(f"unit_price is for price plans only, not for a {self.kind} plan")
        return self

    @property
    def every_item(self) -> bool:
        """Whether the plan covers every item of its store."""
        return self.item_id == EVERY_ITEM


def validate_plan(
    key: bytes | None,
    value: bytes | None,
    *,
    reference_time: datetime,
    max_bytes: int,
    max_future: timedelta,
) -> Plan | Rejection:
    """Turn a raw Kafka record into a :class:`Plan` or a :class:`Rejection`.

    ``reference_time`` is the record's Kafka timestamp (a replayed record gets the same
    verdict); ``published_at`` may not lie more than ``max_future`` after it. The key, when
    there is one, must be the ``plan_id``.
    """
    if value is None or len(value) == 0:
        return Rejection("empty message: a plan v1 message needs a JSON object as its value")
    if len(value) > max_bytes:
        return Rejection(too_large(len(value), max_bytes))
    try:
        plan = Plan.model_validate_json(value)
    except ValidationError as exc:
        return Rejection(explain(value, exc, "a plan v1 message"))
    if plan.published_at - reference_time > max_future:
        return Rejection(
            too_far_ahead("published_at", plan.published_at, reference_time, max_future)
        )
    if key and key != plan.plan_id.encode():
        return Rejection(
            f"Kafka key {key[:100]!r} does not match the plan's plan_id {plan.plan_id!r}; "
            "key each plan by its plan_id or send no key"
        )
    return plan
