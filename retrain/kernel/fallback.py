"""Re-tune, refit and forecast one series, falling back step by step so it never fails.

Order: the chosen model (:mod:`retrain.kernel.tuning`: one family, or the mean of several) -> its
runner-up -> the last good model (the registry's champion) -> Prophet defaults -> seasonal
naive. Each step's failure is recorded in ``fallback_reason``. Whatever serves, forecasts are
never negative, and days the series is regularly closed are forecast zero.
"""

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import optuna

from retrain.errors import RetrainError
from retrain.kernel.bands import NO_BAND, apply_band
from retrain.kernel.calendar import Closures
from retrain.kernel.families import GLOBAL, Candidate, GroupView, SeriesData, forecast
from retrain.kernel.plans import DayPlan
from retrain.kernel.prepare import prepare
from retrain.kernel.series import History, mase_scale, seasonal_naive
from retrain.kernel.tuning import Choice, TuneConfig, Tuned, members_of, tune
from retrain.prophet.fit import (
    DEFAULT_PARAMS,
    FitOptions,
    Params,
    fit_prophet,
    predict_horizon,
    stan_init_of,
)

__all__ = ["FAMILY_MODEL", "SeriesFit", "WarmState", "naive_forecast", "retrain_one"]

# Prophet's default interval is 80 %; the naive fallback matches it.
_Z80 = 1.2816
# The ``kind`` of a model file that is not a Prophet model: a candidate to refit.
FAMILY_MODEL = "shelfcast_family"


@dataclass(frozen=True)
class WarmState:
    """What the last wave left for this one: its chosen params, fitted values and choice."""

    params: Params | None = None
    stan_init: Mapping[str, Any] | None = None
    choice: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SeriesFit:
    """The outcome of one series' retrain, as plain data."""

    method: str
    data_through: date
    points: list[dict[str, Any]]
    model_json: str
    params: dict[str, Any] | None = None
    stan_init: dict[str, Any] | None = None
    warm: bool = False
    trials: int = 0
    validation_mae: float | None = None
    validation_mase: float | None = None
    fallback_reason: str | None = None
    mase_scale: float | None = None
    fit_seconds: float = 0.0
    fits: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    family: str | None = None
    runner_up: str | None = None
    runner_up_mae: float | None = None
    choice: dict[str, Any] | None = None
    members: tuple[str, ...] = ()  # the families whose forecasts made it

    @property
    def uses_group(self) -> bool:
        """Whether the group model's forecast is part of this one."""
        return GLOBAL in self.members


def _publishable(
    end: date,
    yhat: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    closed: np.ndarray,
) -> list[dict[str, Any]]:
    """Points clipped at zero (demand is never negative), zero on closed days."""
    yhat = np.where(closed, 0.0, np.maximum(yhat, 0.0))
    lower = np.where(closed, 0.0, np.clip(lower, 0.0, yhat))
    upper = np.where(closed, 0.0, np.maximum(upper, yhat))
    return [
        {
            "date": (end + timedelta(days=k + 1)).isoformat(),
            "yhat": float(y),
            "yhat_lower": float(lo),
            "yhat_upper": float(hi),
        }
        for k, (y, lo, hi) in enumerate(zip(yhat, lower, upper, strict=True))
    ]


def _frame_points(frame: Any, end: date, closed: np.ndarray) -> list[dict[str, Any]]:
    return _publishable(
        end,
        frame["yhat"].to_numpy(float),
        frame["yhat_lower"].to_numpy(float),
        frame["yhat_upper"].to_numpy(float),
        closed,
    )


def naive_forecast(
    history: History, horizon: int, closed: np.ndarray | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Seasonal-naive points with an 80 % interval from the weekly differences, and its model."""
    values = history.values
    yhat = seasonal_naive(values, horizon)
    spread = float(np.std(values[7:] - values[:-7])) if len(values) > 8 else 0.0
    shut = np.zeros(horizon, dtype=bool) if closed is None else closed
    points = _publishable(history.end, yhat, yhat - _Z80 * spread, yhat + _Z80 * spread, shut)
    model = json.dumps({"kind": "seasonal_naive", "season": 7, "last": [float(v) for v in yhat]})
    return points, model


def _why(step: str, exc: BaseException) -> str:
    return f"{step}: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _Final:
    mean: np.ndarray
    model_json: str
    stan_init: dict[str, Any] | None
    dropped: list[str]


def _refit(
    candidate: Candidate,
    data: SeriesData,
    horizon: int,
    options: FitOptions,
    group: GroupView | None = None,
) -> _Final:
    """The candidate on all history, structure kept; a combination drops members that fail.
    ``global`` is the group model's forecast: a prediction, not a fit."""
    means, dropped = [], []
    prophet: Any = None
    end = data.start + timedelta(days=len(data.values) - 1)
    for member in members_of(candidate):
        try:
            if member.family == GLOBAL:
                if group is None:
                    raise RetrainError("no group model serves this series")
                means.append(np.asarray(group.forecast, dtype=float))
            elif member.family == "prophet":
                params = Params.from_dict(member.params) if member.params else DEFAULT_PARAMS
                regressors = data.regressors_until(len(data.values))
                prophet = fit_prophet(
                    data.start,
                    data.values,
                    params,
                    options,
                    intervals=False,
                    holidays=data.holidays,
                    regressors=regressors,
                )
                found = predict_horizon(prophet, end, horizon, regressors)
                means.append(found["yhat"].to_numpy(float))
            else:
                began = time.perf_counter()
                means.append(forecast(member, data, len(data.values), horizon, options))
                options.stats.fits += 1
                options.stats.seconds += time.perf_counter() - began
        except Exception as exc:  # a failing member leaves the others
            if candidate.family != "combo":
                raise
            dropped.append(_why(member.family, exc))
    if not means:
        raise RuntimeError("every member of the combination failed: " + "; ".join(dropped))
    if candidate.family == "prophet":
        from prophet.serialize import model_to_json

        return _Final(means[0], model_to_json(prophet), stan_init_of(prophet), dropped)
    model = json.dumps({"kind": FAMILY_MODEL, "candidate": candidate.as_dict()})
    return _Final(np.mean(means, axis=0), model, None, dropped)


class _Run:
    """One series' retrain: what every step of the fallback chain shares."""

    def __init__(self, history: History, config: TuneConfig, options: FitOptions) -> None:
        self.history = history
        self.config = config
        self.options = options
        self.began = time.perf_counter()
        self.reasons: list[str] = []

    def done(
        self, method: str, points: list[dict[str, Any]], model_json: str, **extra: Any
    ) -> SeriesFit:
        return SeriesFit(
            method=method,
            data_through=self.history.end,
            points=points,
            model_json=model_json,
            fallback_reason="; ".join(self.reasons) or None,
            mase_scale=mase_scale(self.history.values),
            fit_seconds=self.options.stats.seconds,
            fits=self.options.stats.fits,
            metrics={"seconds": time.perf_counter() - self.began, **extra.pop("metrics", {})},
            **extra,
        )

    def served(
        self,
        tuned: Tuned,
        data: SeriesData,
        closed: np.ndarray,
        group: GroupView | None,
    ) -> SeriesFit | None:
        """The champion (else its runner-up) refitted on all history, with its fold band."""
        band = tuned.choice.band or NO_BAND
        attempts = [tuned.champion] + ([tuned.runner_up] if tuned.runner_up else [])
        for rank, candidate in enumerate(attempts):
            try:
                final = _refit(candidate, data, self.config.horizon, self.options, group)
            except Exception as exc:
                self.reasons.append(_why(f"refit {candidate.family}", exc))
                continue
            self.reasons.extend(final.dropped)
            choice = tuned.choice
            if rank:
                choice = Choice(
                    candidate,
                    choice.structures,
                    choice.score,
                    choice.waves,
                    choice.group_version,
                    choice.band,
                )
            prophet_params = candidate.params if candidate.family == "prophet" else {}
            mean = final.mean
            return self.done(
                "tuned",
                _publishable(self.history.end, mean, *apply_band(mean, band), closed),
                final.model_json,
                params={"family": candidate.family, **prophet_params},
                stan_init=final.stan_init,
                warm=tuned.warm,
                trials=tuned.trials,
                validation_mae=tuned.mae,
                validation_mase=tuned.mase,
                family=candidate.family,
                runner_up=tuned.runner_up.family if tuned.runner_up else None,
                runner_up_mae=tuned.runner_up_mae,
                choice=choice.as_dict(),
                members=tuple(m.family for m in members_of(candidate)),
                metrics={
                    "reselected": float(tuned.reselected),
                    **{f"validation_mae_{k}": v for k, v in tuned.family_errors.items()},
                },
            )
        return None

    def group_alone(self, group: GroupView, closed: np.ndarray) -> SeriesFit:
        """The group model's forecast with its group's pooled band: a series too young for
        the local families' folds (a new item) is forecast from its first day."""
        mean = np.asarray(group.forecast, dtype=float)
        model = json.dumps({"kind": FAMILY_MODEL, "candidate": Candidate(GLOBAL).as_dict()})
        return self.done(
            "tuned",
            _publishable(self.history.end, mean, *apply_band(mean, group.band), closed),
            model,
            params={"family": GLOBAL},
            family=GLOBAL,
            members=(GLOBAL,),
        )

    def last_good(
        self,
        stored_json: Callable[[], str | None],
        data: SeriesData | None,
        closed: np.ndarray,
        group: GroupView | None,
    ) -> SeriesFit | None:
        from prophet.serialize import model_from_json

        horizon = self.config.horizon
        try:
            champion = stored_json()
            if champion is None:
                self.reasons.append("last_good: no earlier model of this series")
                return None
            stored = json.loads(champion)
            if stored.get("kind") == FAMILY_MODEL and data is not None:
                candidate = Candidate.from_dict(stored["candidate"])
                mean = _refit(candidate, data, horizon, self.options, group).mean
                points = _publishable(self.history.end, mean, mean, mean, closed)
                members = tuple(m.family for m in members_of(candidate))
                return self.done(
                    "last_good", points, champion, family=candidate.family, members=members
                )
            model = model_from_json(champion)
            frame = predict_horizon(model, self.history.end, horizon)
            points = _frame_points(frame, self.history.end, closed)
            return self.done("last_good", points, champion, family="prophet")
        except Exception as exc:
            self.reasons.append(_why("last_good", exc))
            return None

    def defaults(self, closed: np.ndarray) -> SeriesFit:
        """Prophet's defaults, else the seasonal naive: the end of the chain never fails."""
        from prophet.serialize import model_to_json

        history, horizon = self.history, self.config.horizon
        try:
            model = fit_prophet(history.start, history.values, DEFAULT_PARAMS, self.options)
            return self.done(
                "defaults",
                _frame_points(predict_horizon(model, history.end, horizon), history.end, closed),
                model_to_json(model),
                params=DEFAULT_PARAMS.as_dict(),
                stan_init=stan_init_of(model),
                family="prophet",
            )
        except Exception as exc:
            self.reasons.append(_why("defaults", exc))
        points, model_json = naive_forecast(history, horizon, closed)
        return self.done("seasonal_naive", points, model_json, family="naive")


def retrain_one(
    history: History,
    config: TuneConfig,
    options: FitOptions,
    study: "optuna.Study | Callable[[], optuna.Study] | None",
    warm: WarmState,
    last_good: Callable[[], str | None],
    group: GroupView | None = None,
    plan: DayPlan | None = None,
    retune: bool = True,
    notes: list[str] | None = None,
) -> SeriesFit:
    """Select (when a study is given, or a function that makes it: called only when the
    selection needs its past trials), refit on all history, forecast ``config.horizon``
    days.

    ``group``: the group model's view of the series (``global`` joins the candidates);
    ``plan``: what is planned over the history and the horizon (closures, regressors);
    ``retune=False``: only the plans changed, so the champion is refitted with the new inputs
    and nothing is re-selected. ``notes``: what the caller already had to do without (kept
    as fallback reasons).
    """
    run = _Run(history, config, options)
    run.reasons.extend(notes or [])
    horizon = config.horizon
    data: SeriesData | None = None
    closures: Closures | None = None
    try:
        data, closures = prepare(history, horizon, config.calendar, config.select_days, plan)
    except Exception as exc:
        run.reasons.append(_why("calendar", exc))
    closed = closures.future_closed if closures is not None else np.zeros(horizon, dtype=bool)

    if study is not None and data is not None and closures is not None:
        previous = Choice.from_dict(warm.choice) if warm.choice else None
        tuned: Tuned | None = None
        try:
            if not retune and previous is not None and previous.band is not None:
                tuned = _replay(previous, history)
            else:
                tuned = tune(history, data, closures, study, config, options, previous, group)
        except Exception as exc:  # any fit error falls back; it is recorded
            run.reasons.append(_why("tuning", exc))
        if tuned is not None:
            fit = run.served(tuned, data, closed, group)
            if fit is not None:
                return fit
    if group is not None:
        return run.group_alone(group, closed)
    fit = run.last_good(last_good, data, closed, group)
    if fit is not None:
        return fit
    return run.defaults(closed)


def _replay(previous: Choice, history: History) -> Tuned:
    """The previous choice as it stands (the plans changed, not the data)."""
    scale = mase_scale(history.values)
    return Tuned(
        champion=previous.champion,
        mae=previous.score,
        mase=previous.score / scale if scale > 0 else float("inf"),
        runner_up=None,
        runner_up_mae=None,
        choice=previous,
        trials=0,
        warm=True,
    )
