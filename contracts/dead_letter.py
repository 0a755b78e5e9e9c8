"""Contract ``dead_letter`` v1: the envelope of a quarantined record on ``pos.sales.dlq``.

A letter carries at most ``MAX_RAW_BYTES`` of the record's key and of its value: a record of
any size is quarantined, and its whole bytes base64-encoded in one message could exceed the
broker's message limit. When a copy is cut, the letter also says the original size and its
SHA-256; the whole record stays in the Delta table ``quarantine``.
"""

import base64
import hashlib
from datetime import datetime
from typing import NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["MAX_RAW_BYTES", "DeadLetter", "RawCopy", "b64", "raw_copy"]

MAX_RAW_BYTES = 65_536

# Fields added to v1 compatibly: present only on a letter whose raw copy was cut.
CUT_FIELDS = ("raw_key_size", "raw_key_sha256", "raw_value_size", "raw_value_sha256")


def b64(raw: bytes | None) -> str | None:
    """Base64 text of raw bytes, keeping ``None``."""
    return None if raw is None else base64.b64encode(raw).decode("ascii")


class RawCopy(NamedTuple):
    """What a letter carries of one raw field: base64 of its first bytes, and when they are
    not all of it, the original size and SHA-256."""

    b64: str | None
    size: int | None = None
    sha256: str | None = None


def raw_copy(raw: bytes | None, limit: int = MAX_RAW_BYTES) -> RawCopy:
    """The copy of ``raw`` a letter carries: whole when it fits in ``limit`` bytes, none when
    ``limit`` is 0."""
    if raw is None or len(raw) <= limit:
        return RawCopy(b64=b64(raw))
    first = b64(raw[:limit]) if limit else None
    return RawCopy(b64=first, size=len(raw), sha256=hashlib.sha256(raw).hexdigest())


class DeadLetter(BaseModel):
    """A record that failed validation, with (the start of) its raw bytes and the reason."""

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
    raw_key_size: int | None = Field(default=None, ge=0)
    raw_key_sha256: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")
    raw_value_size: int | None = Field(default=None, ge=0)
    raw_value_sha256: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")

    def to_json(self) -> str:
        """The message: the fields of a cut copy only when it was cut (a whole copy reads
        exactly as before they were added)."""
        cut = {name for name in CUT_FIELDS if getattr(self, name) is None}
        return self.model_dump_json(exclude=cut)
