"""Contract ``dead_letter`` v1: the envelope of a quarantined record on ``pos.sales.dlq``."""

import base64
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["DeadLetter", "b64"]


def b64(raw: bytes | None) -> str | None:
    """Base64 text of raw bytes, keeping ``None``."""
    return None if raw is None else base64.b64encode(raw).decode("ascii")


class DeadLetter(BaseModel):
    """A record that failed validation, with its raw bytes and the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    source_timestamp: AwareDatetime | None = None
    raw_key_b64: str | None = None
    raw_value_b64: str | None = None
    reason: str = Field(min_length=1)
    quarantined_at: datetime
    contract: str = "pos_sale/v1"
