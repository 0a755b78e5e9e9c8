"""Re-tune, refit and forecast one series, falling back step by step so it never fails.

Order: tuned Prophet -> the last good model (the registry's champion) -> Prophet defaults ->
seasonal naive. Each step's failure is recorded in ``fallback_reason``.
"""

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import optuna

from retrain.prophet_fit import (
    DEFAULT_PARAMS,
    FitOptions,
    Params,
    fit_prophet,
    predict_horizon,
    stan_init_of,
)
from retrain.series import History, mase_scale, seasonal_naive
from retrain.tuning import TuneConfig, tune

__all__ = ["SeriesFit", "WarmState", "naive_forecast", "retrain_one"]

# Prophet's default interval is 80 %; the naive fallback matches it.
_Z80 = 1.2816


@dataclass(frozen=True)
class WarmState:
    """What the last wave left for this one: its chosen params and fitted values."""

    params: Params | None = None
    stan_init: Mapping[str, Any] | None = None


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


def _points(frame: Any) -> list[dict[str, Any]]:
    return [
        {
            "date": ds.date().isoformat(),
            "yhat": float(y),
            "yhat_lower": float(lo),
            "yhat_upper": float(hi),
        }
        for ds, y, lo, hi in zip(
            frame["ds"], frame["yhat"], frame["yhat_lower"], frame["yhat_upper"], strict=True
        )
    ]


def naive_forecast(history: History, horizon: int) -> tuple[list[dict[str, Any]], str]:
    """Seasonal-naive points with an 80 % interval from the weekly differences, and its model."""
    values = history.values
    yhat = seasonal_naive(values, horizon)
    spread = float(np.std(values[7:] - values[:-7])) if len(values) > 8 else 0.0
    points = [
        {
            "date": (history.end + timedelta(days=k + 1)).isoformat(),
            "yhat": float(y),
            "yhat_lower": float(y - _Z80 * spread),
            "yhat_upper": float(y + _Z80 * spread),
        }
        for k, y in enumerate(yhat)
    ]
    model = json.dumps({"kind": "seasonal_naive", "season": 7, "last": [float(v) for v in yhat]})
    return points, model


def _why(step: str, exc: BaseException) -> str:
    return f"{step}: {type(exc).__name__}: {exc}"


def retrain_one(
    history: History,
    config: TuneConfig,
    options: FitOptions,
    study: optuna.Study | None,
    warm: WarmState,
    last_good: Callable[[], str | None],
) -> SeriesFit:
    """Tune (when a study is given), refit on all history, forecast ``config.horizon`` days."""
    from prophet.serialize import model_from_json, model_to_json

    began = time.perf_counter()
    reasons: list[str] = []

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
            metrics={"seconds": time.perf_counter() - began},
            **extra,
        )

    if study is not None:
        try:
            tuned = tune(history, study, config, options, warm.params)
            model = fit_prophet(
                history.start, history.values, tuned.best.params, options, warm.stan_init
            )
            return done(
                "tuned",
                _points(predict_horizon(model, history.end, config.horizon)),
                model_to_json(model),
                params=tuned.best.params.as_dict(),
                stan_init=stan_init_of(model),
                warm=tuned.warm,
                trials=tuned.trials,
                validation_mae=tuned.best.mae,
                validation_mase=tuned.best.mase,
            )
        except Exception as exc:  # any fit error falls back; it is recorded
            reasons.append(_why("tuning", exc))
    try:
        champion = last_good()
        if champion is not None:
            model = model_from_json(champion)
            frame = predict_horizon(model, history.end, config.horizon)
            return done("last_good", _points(frame), champion)
        reasons.append("last_good: no earlier model of this series")
    except Exception as exc:
        reasons.append(_why("last_good", exc))
    try:
        model = fit_prophet(history.start, history.values, DEFAULT_PARAMS, options)
        return done(
            "defaults",
            _points(predict_horizon(model, history.end, config.horizon)),
            model_to_json(model),
            params=DEFAULT_PARAMS.as_dict(),
            stan_init=stan_init_of(model),
        )
    except Exception as exc:
        reasons.append(_why("defaults", exc))
    points, model_json = naive_forecast(history, config.horizon)
    return done("seasonal_naive", points, model_json)
