"""The trigger policy: which series are due for a retrain, from ``series_state`` and thresholds.

Pure: rows and thresholds in, the due series out. A series is due when it has enough new data
(``min_new_events`` and ``min_new_days``), or any new data while its live error drifted
(``drift_ratio``), and its cooldown has passed; or when a plan touching it (or its store's
record) changed since it was last handed over, cooldown or not: a planner who moves a
promotion expects the forecast to move now, and the job only predicts again. In every case
it must not be queued or running already (within ``busy_timeout_seconds``); forced series
skip every test. Each due series says why (:data:`REASONS`): the fullest job wins (new
sales, then drift, then a plan change). The most-changed series go first; at most
``max_series_per_wave`` per micro-batch.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.errors import SeriesKeyError
from contracts.series import parse_series_key, series_key

__all__ = ["REASONS", "Due", "Reason", "Thresholds", "due_among", "due_series", "waiting"]

_BUSY = frozenset({"queued", "running"})

# Why a series is handed over, as the coordinator receives it (a submission's fifth element).
Reason = Literal["sales", "drift", "plan", "forced"]
REASONS: tuple[Reason, ...] = ("sales", "drift", "plan", "forced")


class Thresholds(BaseModel):
    """What ops tune while the service runs (``shelfcast thresholds``).

    Every value has an upper bound and no infinity or NaN: ``cooldown_seconds=inf`` passed a
    lower bound alone and stopped every retrain. The bounds are far beyond any useful value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_new_events: int = Field(
        default=1, ge=0, le=1_000_000_000, description="new sale events since last retrain"
    )
    min_new_days: int = Field(
        default=1, ge=0, le=3_660, description="distinct new sale days since then"
    )
    cooldown_seconds: float = Field(
        default=30.0,
        ge=0,
        le=30 * 86_400,
        description="least time between two retrains of one series (at most 30 days)",
    )
    max_series_per_wave: int = Field(
        default=500, ge=1, le=10_000_000, description="most series handed to Ray per micro-batch"
    )
    drift_ratio: float | None = Field(
        default=2.0,
        gt=0,
        le=1_000,
        description="retrain when live error / validation error reaches this (none: off)",
    )
    busy_timeout_seconds: float = Field(
        default=900.0,
        ge=1,
        le=7 * 86_400,
        description="a series queued or running this long without news is offered again",
    )
    force: tuple[str, ...] = Field(
        default=(), description="STORE|ITEM series to retrain at the next micro-batch"
    )

    @field_validator("force")
    @classmethod
    def _series_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            try:
                parse_series_key(key)
            except SeriesKeyError:
                raise ValueError(f"{key!r} is not STORE|ITEM") from None
        return value


@dataclass(frozen=True)
class Due:
    """A series to hand to the coordinator, and why (``reason`` in words, ``kind`` as the
    coordinator takes it)."""

    store_id: str
    item_id: str
    priority: float
    reason: str
    kind: Reason = "sales"

    @property
    def key(self) -> str:
        return series_key(self.store_id, self.item_id)


def _reason(row: Mapping[str, Any], t: Thresholds, now: datetime) -> tuple[Reason, str] | None:
    last = row.get("last_submitted_at")
    cooling = last is not None and (now - last).total_seconds() < t.cooldown_seconds
    events = row.get("events_since_retrain") or 0
    days = row.get("days_since_retrain") or 0
    if not cooling and events > 0 and events >= t.min_new_events and days >= t.min_new_days:
        return "sales", f"{events} new events over {days} days"
    drift = row.get("drift_ratio")
    # Drift counts only with new data since the last submission: the ratio stays until a
    # retrain succeeds, and a series that kept failing was resubmitted every cooldown.
    if (
        not cooling
        and t.drift_ratio is not None
        and drift is not None
        and drift >= t.drift_ratio
        and events > 0
    ):
        return "drift", f"live error {drift:.2f}x its validation error"
    changes = row.get("plan_changes_since_retrain") or 0
    if changes > 0:
        return "plan", f"{changes} plan changes"
    return None


def waiting(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` has news since its last hand-over (sales or plan changes): only such
    rows, and forced series, can be due. The table store keeps the set of them, so a hand-off
    tests those rather than every series (0.2 s a tick at 100,000 series)."""
    return (row.get("events_since_retrain") or 0) > 0 or (
        row.get("plan_changes_since_retrain") or 0
    ) > 0


def due_series(rows: Iterable[Mapping[str, Any]], t: Thresholds, now: datetime) -> list[Due]:
    """The series to retrain now, most new events first, capped at ``max_series_per_wave``."""
    forced = set(t.force)
    due = []
    for row in rows:
        key = series_key(row["store_id"], row["item_id"])
        priority = float(row.get("events_since_retrain") or 0)
        if key in forced:
            due.append(
                Due(row["store_id"], row["item_id"], float("inf"), "forced by ops", "forced")
            )
            continue
        last = row.get("last_submitted_at")
        # A busy row with no time (an older release's) would otherwise wait for ever: its
        # timeout counts as passed.
        if (
            row.get("status") in _BUSY
            and last is not None
            and (now - last).total_seconds() < t.busy_timeout_seconds
        ):
            continue
        found = _reason(row, t, now)
        if found is not None:
            kind, reason = found
            due.append(Due(row["store_id"], row["item_id"], priority, reason, kind))
    due.sort(key=lambda d: -d.priority)
    return due[: t.max_series_per_wave]


def due_among(
    state: Mapping[str, Mapping[str, Any]], waiting: set[str], t: Thresholds, now: datetime
) -> list[Due]:
    """:func:`due_series` over the rows of ``state`` (by ``"store|item"``) that can be due:
    the ``waiting`` ones and forced ones. Sorted by key first, so that equal priorities go
    in one order whatever the set's."""
    keys = (waiting & state.keys()) | (set(t.force) & state.keys())
    return due_series([state[k] for k in sorted(keys)], t, now)
