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

from retrain.kernel.calendar import Closures
from retrain.kernel.families import Candidate, SeriesData, forecast
from retrain.kernel.prepare import prepare
from retrain.kernel.series import History, mase_scale, seasonal_naive
from retrain.kernel.tuning import Choice, TuneConfig, members_of, tune
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


def _interval(residuals: np.ndarray) -> tuple[float, float]:
    """The 10th and 90th percentiles of the folds' errors: an 80 % interval measured at the
    same horizon, for any family or combination alike."""
    if len(residuals) < 10:
        return 0.0, 0.0
    low, high = np.quantile(residuals, [0.1, 0.9])
    return float(low), float(high)


@dataclass(frozen=True)
class _Final:
    mean: np.ndarray
    model_json: str
    stan_init: dict[str, Any] | None
    dropped: list[str]


def _refit(candidate: Candidate, data: SeriesData, horizon: int, options: FitOptions) -> _Final:
    """The candidate on all history, structure kept; a combination drops members that fail."""
    means, dropped = [], []
    prophet: Any = None
    end = data.start + timedelta(days=len(data.values) - 1)
    for member in members_of(candidate):
        try:
            if member.family == "prophet":
                params = Params.from_dict(member.params) if member.params else DEFAULT_PARAMS
                prophet = fit_prophet(
                    data.start,
                    data.values,
                    params,
                    options,
                    intervals=False,
                    holidays=data.holidays,
                )
                means.append(predict_horizon(prophet, end, horizon)["yhat"].to_numpy(float))
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


def retrain_one(
    history: History,
    config: TuneConfig,
    options: FitOptions,
    study: optuna.Study | None,
    warm: WarmState,
    last_good: Callable[[], str | None],
) -> SeriesFit:
    """Select (when a study is given), refit on all history, forecast ``config.horizon`` days."""
    from prophet.serialize import model_from_json, model_to_json

    began = time.perf_counter()
    reasons: list[str] = []
    horizon = config.horizon

    def done(method: str, points: list[dict[str, Any]], model_json: str, **extra: Any) -> SeriesFit:
        return SeriesFit(
            method=method,
            data_through=history.end,
            points=points,
            model_json=model_json,
            fallback_reason="; ".join(reasons) or None,
            mase_scale=mase_scale(history.values),
            fit_seconds=options.stats.seconds,
            fits=options.stats.fits,
            metrics={"seconds": time.perf_counter() - began, **extra.pop("metrics", {})},
            **extra,
        )

    closures: Closures | None = None
    try:
        data, closures = prepare(history, horizon, config.calendar, config.select_days)
    except Exception as exc:
        reasons.append(_why("calendar", exc))
    closed = closures.future_closed if closures is not None else np.zeros(horizon, dtype=bool)

    if study is not None and closures is not None:
        try:
            previous = Choice.from_dict(warm.choice) if warm.choice else None
            tuned = tune(history, data, closures, study, config, options, previous)
            low, high = _interval(tuned.residuals)
            attempts = [tuned.champion] + ([tuned.runner_up] if tuned.runner_up else [])
            for rank, candidate in enumerate(attempts):
                try:
                    final = _refit(candidate, data, horizon, options)
                except Exception as exc:
                    reasons.append(_why(f"refit {candidate.family}", exc))
                    continue
                reasons.extend(final.dropped)
                chosen = candidate if rank == 0 else tuned.champion
                prophet_params = candidate.params if candidate.family == "prophet" else {}
                return done(
                    "tuned",
                    _publishable(
                        history.end, final.mean, final.mean + low, final.mean + high, closed
                    ),
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
                    choice=(
                        tuned.choice
                        if chosen == candidate
                        else Choice(candidate, tuned.choice.structures, tuned.choice.score)
                    ).as_dict(),
                    metrics={
                        "reselected": float(tuned.reselected),
                        **{f"validation_mae_{k}": v for k, v in tuned.family_errors.items()},
                    },
                )
        except Exception as exc:  # any fit error falls back; it is recorded
            reasons.append(_why("tuning", exc))
    try:
        champion = last_good()
        if champion is not None:
            stored = json.loads(champion)
            if stored.get("kind") == FAMILY_MODEL and closures is not None:
                candidate = Candidate.from_dict(stored["candidate"])
                final = _refit(candidate, data, horizon, options)
                mean = final.mean
                points = _publishable(history.end, mean, mean, mean, closed)
                return done("last_good", points, champion, family=candidate.family)
            model = model_from_json(champion)
            frame = predict_horizon(model, history.end, horizon)
            return done(
                "last_good", _frame_points(frame, history.end, closed), champion, family="prophet"
            )
        reasons.append("last_good: no earlier model of this series")
    except Exception as exc:
        reasons.append(_why("last_good", exc))
    try:
        model = fit_prophet(history.start, history.values, DEFAULT_PARAMS, options)
        return done(
            "defaults",
            _frame_points(predict_horizon(model, history.end, horizon), history.end, closed),
            model_to_json(model),
            params=DEFAULT_PARAMS.as_dict(),
            stan_init=stan_init_of(model),
            family="prophet",
        )
    except Exception as exc:
        reasons.append(_why("defaults", exc))
    points, model_json = naive_forecast(history, horizon, closed)
    return done("seasonal_naive", points, model_json, family="naive")
