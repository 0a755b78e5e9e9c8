"""Model families for one series: fit on a past, forecast the days after it.

A :class:`Candidate` is a family and its structure as plain data (ARIMA orders, ETS form,
Theta variant, Prophet priors). The automatic families select structure once
(:func:`select_structure`, the expensive part: AutoARIMA's stepwise search costs seconds a
series), after which :func:`forecast` re-estimates that structure on any past in tens of
milliseconds. statsforecast provides every family but Prophet; nothing is re-implemented.

Every family sees the series with closed days imputed (:func:`retrain.kernel.calendar.fill_closed`)
except Prophet, which fits closed days as missing and takes the public holidays.

``topdown`` forecasts the series' store and splits it down: the store's total (all its
items, far less noisy than one item) on the same weekdays a year earlier, scaled by its
growth since (the last ``growth_days`` against the same days a year before), times the
series' share of the store (over the last ``share_days``, overall or per weekday). Its
params are searched like Prophet's; it costs microseconds. A store with one series is its
own pool: the family is then a year-ago naive with growth.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from retrain.errors import RetrainError
from retrain.kernel.series import YEAR
from retrain.prophet.fit import FitOptions, Params, fit_prophet, predict_horizon

__all__ = [
    "AUTO_FAMILIES",
    "EXOGENOUS",
    "FAMILIES",
    "GLOBAL",
    "INTERMITTENT",
    "TOPDOWN_CHOICES",
    "TOPDOWN_DEFAULT",
    "TOPDOWN_MIN_DAYS",
    "Candidate",
    "GroupView",
    "SeriesData",
    "forecast",
    "select_structure",
]

SEASON = 7
# The families a study searches; "combo" (a mean of others) is built in retrain.kernel.tuning.
FAMILIES = (
    "prophet",
    "arima",
    "ets",
    "theta",
    "mstl",
    "naive",
    "croston",
    "adida",
    "imapa",
    "topdown",
    "global",
)
# The group model's forecast (retrain.group): learned across the series of a group, it is
# not fitted per series; its fold forecasts come from the group's own validation.
GLOBAL = "global"
# Families that take the known-ahead regressors (planned promotions, school holidays, the
# days around closures) where a series has plans.
EXOGENOUS = ("prophet", "arima")
# Families whose structure is chosen by a statsforecast Auto model.
AUTO_FAMILIES = ("arima", "ets", "theta")
# Families given the yearly cycle (yearly_profile) when the past holds enough of it.
YEARLY_ADJUSTED = ("arima", "ets", "theta")
MIN_YEARLY_DAYS = 400
YEARLY_ORDER = 10
YEARLY_RIDGE = 0.01
# For slow movers only (many zero days): on busy series they are never competitive.
INTERMITTENT = ("croston", "adida", "imapa")
# topdown's params and their choices; the first of each is its default.
TOPDOWN_CHOICES: dict[str, tuple[Any, ...]] = {
    "growth_days": (91, 28),
    "share_days": (YEAR, 91),
    "weekday_share": (False, True),
}
TOPDOWN_DEFAULT = {name: choices[0] for name, choices in TOPDOWN_CHOICES.items()}
# The fewest days of history (before the oldest fold) topdown needs.
TOPDOWN_MIN_DAYS = YEAR + max(TOPDOWN_CHOICES["growth_days"])


@dataclass(frozen=True)
class Candidate:
    """A family with its structure or params, as plain (JSON-able) data."""

    family: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.family}:{json.dumps(self.params, sort_keys=True)}"

    def as_dict(self) -> dict[str, Any]:
        return {"family": self.family, "params": self.params}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Candidate":
        return cls(str(values["family"]), dict(values.get("params") or {}))


@dataclass(frozen=True)
class GroupView:
    """What the series' group model says about it: its forecast of the horizon after the
    history, and its forecasts on the group's validation folds (``cutoffs``: fold starts as
    indices into the history, oldest first; ``folds``: one row per cutoff)."""

    forecast: np.ndarray
    cutoffs: tuple[int, ...]
    folds: np.ndarray
    version: str  # the group model's version: the folds change only with it
    band: tuple[float, float] = (1.0, 1.0)  # pooled actual/forecast 10th and 90th percentiles

    def fold(self, cutoff: int) -> np.ndarray:
        """The forecast of the fold that starts at ``cutoff``."""
        return np.asarray(self.folds[self.cutoffs.index(cutoff)], dtype=float)


@dataclass(frozen=True)
class SeriesData:
    """One series as the families see it."""

    start: date
    values: np.ndarray  # as observed; closed days NaN
    filled: np.ndarray  # closed days imputed
    holidays: pd.DataFrame | None = None  # Prophet's holiday frame, history and horizon
    # statsforecast families fit the last year only: they model the weekly cycle, not the
    # yearly one, and their fits cost about linearly in length.
    fit_days: int = YEAR
    pool: np.ndarray | None = None  # the store's daily total, days it was shut imputed
    # Known-ahead columns (plans) indexed by day from ``start`` through the horizon; None
    # without plans.
    regressors: pd.DataFrame | None = None

    @property
    def gap_free(self) -> bool:
        return (
            self.holidays is None
            and self.regressors is None
            and not bool(np.isnan(self.values).any())
        )

    def regressors_until(self, cutoff: int) -> pd.DataFrame | None:
        """The regressors that vary over days ``[0, cutoff)`` (a constant one teaches a model
        nothing and makes ARIMA's regression singular)."""
        if self.regressors is None:
            return None
        past = self.regressors.iloc[max(0, cutoff - self.fit_days) : cutoff]
        varying = [name for name in past.columns if past[name].nunique() > 1]
        return self.regressors[varying] if varying else None


def _statsforecast_model(candidate: Candidate, n: int) -> Any:
    """The statsforecast model of ``candidate`` for a past of ``n`` days."""
    from statsforecast.models import (
        ADIDA,
        ARIMA,
        IMAPA,
        MSTL,
        AutoETS,
        AutoTheta,
        CrostonOptimized,
        SeasonalNaive,
    )

    p = candidate.params
    if candidate.family == "arima":
        return ARIMA(
            order=tuple(p["order"]),
            seasonal_order=tuple(p["seasonal_order"]),
            season_length=SEASON,
            include_mean=bool(p.get("include_mean", True)),
            include_drift=bool(p.get("include_drift", False)),
        )
    if candidate.family == "ets":
        return AutoETS(season_length=SEASON, model=p["model"], damped=bool(p.get("damped")))
    if candidate.family == "theta":
        return AutoTheta(season_length=SEASON, model=p["model"])
    if candidate.family == "mstl":
        # STL's yearly cycle (by date) also carries month-day and holiday-week effects that a
        # smooth Fourier profile misses; it costs ~0.3 s a fit against ~5 ms weekly only.
        return MSTL(season_length=[SEASON, 365] if n >= MIN_YEARLY_DAYS else [SEASON])
    if candidate.family == "naive":
        return SeasonalNaive(season_length=SEASON)
    if candidate.family == "croston":
        return CrostonOptimized()
    if candidate.family == "adida":
        return ADIDA()
    if candidate.family == "imapa":
        return IMAPA()
    raise RetrainError(f"Unknown model family {candidate.family!r}.")


def select_structure(family: str, y: np.ndarray) -> Candidate:
    """The family's structure chosen by its statsforecast Auto model on ``y`` (imputed)."""
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    if family == "arima":
        model = AutoARIMA(season_length=SEASON).fit(y)
        p, q, sp, sq, _, d, sd = (int(x) for x in model.model_["arma"])
        coef = model.model_.get("coef") or {}
        return Candidate(
            "arima",
            {
                "order": [p, d, q],
                "seasonal_order": [sp, sd, sq],
                "include_mean": "intercept" in coef,
                "include_drift": "drift" in coef,
            },
        )
    if family == "ets":
        method = str(AutoETS(season_length=SEASON).fit(y).model_["method"])
        found = re.fullmatch(r"ETS\((\w),(\w)(d?),(\w)\)", method)
        if found is None:
            raise RetrainError(f"Unexpected ETS form {method!r} from statsforecast.")
        error, trend, damped, season = found.groups()
        return Candidate("ets", {"model": error + trend + season, "damped": damped == "d"})
    if family == "theta":
        return Candidate(
            "theta", {"model": str(AutoTheta(season_length=SEASON).fit(y).model_["modeltype"])}
        )
    return Candidate(family)


def forecast(
    candidate: Candidate, data: SeriesData, cutoff: int, horizon: int, options: FitOptions
) -> np.ndarray:
    """The candidate fitted on days ``[0, cutoff)`` and its mean forecast of the next ``horizon``
    days (not clipped: scoring sees the model as it is)."""
    if candidate.family == "prophet":
        params = Params.from_dict(candidate.params) if candidate.params else Params()
        regressors = data.regressors_until(cutoff)
        model = fit_prophet(
            data.start,
            data.values[:cutoff],
            params,
            options,
            intervals=False,
            holidays=data.holidays,
            regressors=regressors,
        )
        through = data.start + timedelta(days=cutoff - 1)
        found = predict_horizon(model, through, horizon, regressors)
        out: np.ndarray = found["yhat"].to_numpy(float)
        return out
    if candidate.family == GLOBAL:
        raise RetrainError(
            "The group model's forecasts come from its own validation, not from a fit here."
        )
    if candidate.family == "topdown":
        return topdown(data, cutoff, horizon, {**TOPDOWN_DEFAULT, **candidate.params})
    past = data.filled[:cutoff]
    yearly = np.zeros(cutoff + horizon)
    if candidate.family in YEARLY_ADJUSTED and cutoff >= MIN_YEARLY_DAYS:
        yearly = yearly_profile(data.start, past, horizon)
    y = past - yearly[:cutoff]
    if candidate.family != "mstl":
        y = y[max(0, cutoff - data.fit_days) :]
    if len(y) < 2 * SEASON + 1:
        raise RetrainError(f"{len(y)} days are too few for {candidate.family}.")
    model = _statsforecast_model(candidate, len(y))
    regressors = data.regressors_until(cutoff) if candidate.family in EXOGENOUS else None
    if regressors is not None:
        columns = regressors.to_numpy(float)
        X, X_future = columns[cutoff - len(y) : cutoff], columns[cutoff : cutoff + horizon]
        result = model.forecast(y=y, h=horizon, X=X, X_future=X_future)
    else:
        result = model.forecast(y=y, h=horizon)
    mean = np.asarray(result["mean"], dtype=float) + yearly[cutoff:]
    if not np.all(np.isfinite(mean)):
        raise RetrainError(f"{candidate.family} forecast is not finite.")
    return mean


def topdown(data: SeriesData, cutoff: int, horizon: int, params: dict[str, Any]) -> np.ndarray:
    """The store's total a year earlier x its growth since x the series' share of it."""
    if data.pool is None:
        raise RetrainError("topdown needs the store's daily total, which this read lacks.")
    growth_days, share_days = int(params["growth_days"]), int(params["share_days"])
    needed = max(YEAR + growth_days, share_days)
    if horizon > YEAR or cutoff < needed:
        raise RetrainError(f"topdown needs {needed} days before a forecast, not {cutoff}.")
    pool, own = data.pool[:cutoff], data.filled[:cutoff]
    before = float(pool[cutoff - YEAR - growth_days : cutoff - YEAR].sum())
    if before <= 0:
        raise RetrainError("The store sold nothing a year before: no growth to measure.")
    growth = float(pool[-growth_days:].sum()) / before
    store = growth * pool[cutoff - YEAR : cutoff - YEAR + horizon]
    if params["weekday_share"]:
        # Per weekday: day k of the horizon has the weekday of index cutoff + k.
        weekday = (np.arange(cutoff - share_days, cutoff + horizon)) % 7
        past, ahead = weekday[:share_days], weekday[share_days:]
        share = np.zeros(7)
        for day in range(7):
            total = float(pool[-share_days:][past == day].sum())
            share[day] = float(own[-share_days:][past == day].sum()) / total if total > 0 else 0.0
        out: np.ndarray = store * share[ahead]
        return out
    total = float(pool[-share_days:].sum())
    if total <= 0:
        raise RetrainError("The store sold nothing lately: no share to split it by.")
    result: np.ndarray = store * (float(own[-share_days:].sum()) / total)
    return result


def yearly_profile(start: date, y: np.ndarray, horizon: int) -> np.ndarray:
    """The yearly cycle of ``y`` and its continuation ``horizon`` days on: Fourier terms of
    the day of the year (order 10, as Prophet's), least squares with a weak ridge, mean zero.

    statsforecast's families model the weekly cycle; MSTL's yearly STL needs two full years
    in every fold, which a 730-day history never has. Taking this out first and adding it
    back to their forecast gives each of them the yearly cycle Prophet fits natively.
    """
    n = len(y)
    t = np.arange(n + horizon) + (start - date(1970, 1, 1)).days
    angles = np.outer(t * (2 * np.pi / 365.25), np.arange(1, YEARLY_ORDER + 1))
    X = np.hstack([np.sin(angles), np.cos(angles)])
    # A trend column keeps growth out of the cycle; it is not part of the profile.
    trend = np.arange(n + horizon) / max(n, 1)
    A = np.column_stack([np.ones(n), trend[:n], X[:n]])
    ridge = np.diag([0.0, 0.0] + [YEARLY_RIDGE * n] * X.shape[1])
    beta = np.linalg.solve(A.T @ A + ridge, A.T @ y)
    out: np.ndarray = X @ beta[2:]
    return out
