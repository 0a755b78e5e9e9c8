"""Calendar and closures of one series: public holidays, closed days, regular closures.

A day on which a normally busy series sold nothing is most likely a closed store (a POS
sends nothing when the doors are shut), not zero demand: such days are fitted as missing.
A series is busy when its typical open day sells at least ``closure_min_level`` units (a
Poisson day at that level has no sale with probability e^-level, under 1 % at 5), so slow
movers keep their zeros. The future is forecast zero on weekdays the series was closed on
in most recent weeks, and on public holidays it was closed on the last time they came round.

Pure: history in, masks out. Holidays come from the ``holidays`` package.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

import numpy as np

from retrain.kernel.series import YEAR

__all__ = [
    "CalendarConfig",
    "Closures",
    "classify",
    "fill_closed",
    "holiday_names",
    "regional_holiday_names",
]


@dataclass(frozen=True)
class CalendarConfig:
    """Holidays and the closure rule (from settings)."""

    country: str | None = None
    subdivision: str | None = None
    # A series whose median day with sales (last year) sells at least this is busy: its
    # zero days are closures. Below it, zeros are genuine demand (slow movers).
    closure_min_level: float = 5.0
    # A weekday closed on at least this share of its last ``closure_weeks`` occurrences is
    # forecast closed.
    closed_weekday_share: float = 0.75
    closure_weeks: int = 8


@cache
def _country_holidays(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    import holidays

    found = holidays.country_holidays(country, subdiv=subdivision, years=[year])
    return {day: str(name) for day, name in found.items()}


def holiday_names(config: CalendarConfig, start: date, end: date) -> dict[date, str]:
    """The public holidays of the configured country (and subdivision) between two dates."""
    if not config.country:
        return {}
    out: dict[date, str] = {}
    for year in range(start.year, end.year + 1):
        for day, name in _country_holidays(config.country, config.subdivision, year).items():
            if start <= day <= end:
                out[day] = name
    return out


@cache
def _subdivisions(country: str) -> tuple[str, ...]:
    import holidays

    return tuple(holidays.country_holidays(country).subdivisions)


def regional_holiday_names(config: CalendarConfig, start: date, end: date) -> dict[date, str]:
    """Holidays of the subdivision, or of any subdivision when none is set: which of them a
    store keeps closed is learned from its own history, so a store in another region
    than the one configured still gets its own holidays right."""
    out = holiday_names(config, start, end)
    if not config.country or config.subdivision:
        return out
    for subdivision in _subdivisions(config.country):
        regional = CalendarConfig(country=config.country, subdivision=subdivision)
        for day, name in holiday_names(regional, start, end).items():
            out.setdefault(day, name)
    return out


@dataclass(frozen=True)
class Closures:
    """Which history days are closures (fitted as missing), and which future days are closed."""

    busy: bool
    closed: np.ndarray  # bool per history day
    future_closed: np.ndarray  # bool per forecast day

    @property
    def any(self) -> bool:
        return bool(self.closed.any())


def classify(
    start: date, values: np.ndarray, horizon: int, config: CalendarConfig, declared: bool = False
) -> Closures:
    """The closure masks of a history starting on ``start`` and the ``horizon`` days after it.

    ``declared``: the store publishes its opening weekdays and its closures ahead (plans), so
    a weekday is not guessed closed from its last weeks. The guess would keep a store that
    reopens after a long closure shut for the whole horizon, against its own plans.
    """
    n = len(values)
    recent = values[-YEAR:]
    open_days = recent[recent > 0]
    level = float(np.median(open_days)) if len(open_days) else 0.0
    busy = level >= config.closure_min_level
    closed = (values <= 0) if busy else np.zeros(n, dtype=bool)
    future = np.zeros(horizon, dtype=bool)
    if not busy or not closed.any():
        return Closures(busy, closed, future)
    weeks = config.closure_weeks
    for offset in range(0 if declared else horizon):
        # Same weekday in the last ``weeks`` weeks of history.
        index = n + offset
        past = [index - 7 * k for k in range(1, weeks + 5) if 0 <= index - 7 * k < n][:weeks]
        if past and float(np.mean(closed[past])) >= config.closed_weekday_share:
            future[offset] = True
    end = start + timedelta(days=n - 1 + horizon)
    names = regional_holiday_names(config, start, end)
    if names:
        last_seen: dict[str, bool] = {}
        for day, name in sorted(names.items()):
            index = (day - start).days
            if index < n:
                last_seen[name] = bool(closed[index])
            elif last_seen.get(name):
                future[index - n] = True
    return Closures(busy, closed, future)


def fill_closed(values: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """``values`` with closed days imputed (for models that need a regular series): the mean
    of the same weekday one and two weeks either side where open, else the mean of the open
    days within three days, else of all open days."""
    if not closed.any():
        return values.astype(float)
    out = values.astype(float).copy()
    n = len(values)
    overall = float(values[~closed].mean()) if (~closed).any() else 0.0
    for index in (int(i) for i in np.flatnonzero(closed)):
        near = [index + k for k in (-7, 7, -14, 14) if 0 <= index + k < n and not closed[index + k]]
        if not near:
            lo, hi = max(0, index - 3), min(n, index + 4)
            near = [k for k in range(lo, hi) if not closed[k]]
        out[index] = float(np.mean(values[near])) if near else overall
    return out
