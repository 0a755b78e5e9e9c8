"""Robust selection: a challenger replaces the champion only when it wins beyond the folds' noise.

Rule ``one_se`` (the default): on the same folds, take the challenger's per-fold errors minus
the champion's, relative to the champion's mean error. The challenger wins when the mean
difference is below zero by more than one standard error of that mean (and by at least
``margin``). With 2-4 folds this is a rough paired test; its point is that a win carried
by one lucky fold does not count, while a small win on every fold does. Rule ``margin``
is the previous one: the challenger's mean error must be ``margin`` below the champion's.

Pure: per-fold scores in, a decision out.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["SelectionRule", "pick", "wins"]


@dataclass(frozen=True)
class SelectionRule:
    """How sure a challenger's win must be (from settings)."""

    kind: Literal["one_se", "margin"] = "one_se"
    margin: float = 0.0  # one_se: also win by this share; margin: the whole rule
    se_multiple: float = 1.0


def wins(champion: Sequence[float], challenger: Sequence[float], rule: SelectionRule) -> bool:
    """Whether ``challenger`` beats ``champion`` by the rule, on the same folds' errors."""
    base = np.asarray(champion, dtype=float)
    other = np.asarray(challenger, dtype=float)
    if base.shape != other.shape or len(base) == 0 or not np.all(np.isfinite(other)):
        return False
    scale = float(base.mean())
    if scale <= 0:
        return False  # a perfect champion cannot be beaten
    if rule.kind == "margin":
        return bool(other.mean() < scale * (1 - rule.margin))
    diff = (other - base) / scale
    if len(diff) < 2:
        return False
    se = float(diff.std(ddof=1)) / np.sqrt(len(diff))
    mean = float(diff.mean())
    return mean + rule.se_multiple * se < 0 and mean < -rule.margin


def pick(champion: str, scores: Mapping[str, Sequence[float]], rule: SelectionRule) -> str:
    """The champion, or the challenger with the lowest mean error among those that beat it."""
    base = scores[champion]
    winners = [
        key for key, errors in scores.items() if key != champion and wins(base, errors, rule)
    ]
    if not winners:
        return champion
    return min(winners, key=lambda key: float(np.mean(scores[key])))
