"""How series are grouped for the group model, and when a group retrains: typed settings."""

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from retrain.group.tuning import GroupTuneConfig

__all__ = ["GroupSpec"]


@dataclass(frozen=True)
class GroupSpec:
    """The group model's settings (built by the application).

    ``by``: ``all`` (one model for every series: the default, right up to about 10,000
    series on one node, see docs/scale.md), ``store`` (one model per store), or ``hash``
    (stores spread over ``buckets`` models by a stable hash of the store id).
    """

    enabled: bool = True
    by: Literal["all", "store", "hash"] = "all"
    buckets: int = 16
    # A group retrains when its newest data is this many days past its model's, when this
    # many hours passed since it trained, or when this many of its series' live forecasts
    # drifted since (the rest of the time its series are forecast from the cached model).
    retrain_days: int = 7
    retrain_hours: float = 168.0
    drift_series: int = 3
    # Days read per series: two years to learn from plus the validation folds.
    history_days: int = 842
    cpus: int = 1
    timeout_seconds: float = 3600.0
    # A group's series wait this long for its first model, then go on with their own.
    wait_seconds: float = 300.0
    tune: GroupTuneConfig = field(default_factory=GroupTuneConfig)

    def group_of(self, store_id: str) -> str:
        """The group a store's series belong to."""
        if self.by == "store":
            return f"store-{store_id}"
        if self.by == "hash":
            bucket = zlib.crc32(store_id.encode()) % max(1, self.buckets)
            return f"hash-{bucket:04d}"
        return "all"

    def stores_of(self, group: str, stores: Sequence[str]) -> list[str] | None:
        """The stores of ``group`` among ``stores`` (None: every store, no filter needed)."""
        if self.by == "all":
            return None
        return [s for s in stores if self.group_of(s) == group]
