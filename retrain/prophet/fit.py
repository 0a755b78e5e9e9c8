"""Prophet for one series: build with tuned params, fit quietly, score folds, forecast.

Pure in spirit: history and params in, numbers out. The only side effect is cmdstan's
temporary files, kept in the ``fit_dir`` the caller owns (cmdstanpy otherwise leaves them
until the process exits, and Ray workers live long).
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from retrain.kernel.series import Fold, History, mase

__all__ = [
    "DEFAULT_PARAMS",
    "FitOptions",
    "FitStats",
    "Params",
    "ScoredParams",
    "Seasonalities",
    "fit_prophet",
    "history_frame",
    "new_model",
    "predict_horizon",
    "score_params",
    "seasonalities",
    "stan_init_of",
]


@cache
def _quiet() -> None:
    # Prophet sets its logger up on import, so this runs after that import.
    for name in ("cmdstanpy", "prophet", "prophet.plot", "prophet.forecaster"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("cmdstanpy").disabled = True


class Seasonalities(NamedTuple):
    """Which of Prophet's seasonalities a model learns (the daily one never: daily data)."""

    yearly: bool
    weekly: bool


def seasonalities(days: int) -> Seasonalities:
    """The seasonalities of a model fitted on ``days`` days: yearly from 365 (explicit, so a
    fold a little under two years still learns the yearly cycle), weekly from 14."""
    return Seasonalities(yearly=days >= 365, weekly=days >= 14)


@dataclass(frozen=True)
class Params:
    """The tuned hyper-parameters of one series' Prophet model."""

    changepoint_prior_scale: float = 0.05
    seasonality_prior_scale: float = 10.0
    seasonality_mode: Literal["additive", "multiplicative"] = "additive"
    holidays_prior_scale: float = 10.0  # used only when the series has holidays

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Params":
        return cls(
            changepoint_prior_scale=float(values["changepoint_prior_scale"]),
            seasonality_prior_scale=float(values["seasonality_prior_scale"]),
            seasonality_mode=values["seasonality_mode"],
            holidays_prior_scale=float(values.get("holidays_prior_scale", 10.0)),
        )


DEFAULT_PARAMS = Params()


@dataclass
class FitStats:
    """Fits made and seconds spent inside ``fit`` (for the fitting share benchmarks report)."""

    fits: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class FitOptions:
    """How to fit: where cmdstan writes, which backend, how many interval samples."""

    fit_dir: Path
    backend: str = "cmdstan"
    uncertainty_samples: int = 100
    stats: FitStats = field(default_factory=FitStats)


@dataclass(frozen=True)
class ScoredParams:
    """Rolling-origin validation of one parameter set: mean MAE and MASE over the folds."""

    params: Params
    mae: float
    mase: float


def history_frame(
    start: date, values: np.ndarray, regressors: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Prophet's input frame: ``ds`` one row per day from ``start``, ``y`` the values, and
    the regressors' columns on those days (``regressors`` indexed by day, from ``start``)."""
    frame = pd.DataFrame({"ds": pd.date_range(start, periods=len(values), freq="D"), "y": values})
    if regressors is not None:
        for name in regressors.columns:
            frame[name] = regressors[name].to_numpy(float)[: len(values)]
    return frame


def new_model(
    params: Params,
    days: int,
    samples: int,
    backend: str = "cmdstan",
    holidays: pd.DataFrame | None = None,
    regressors: tuple[str, ...] = (),
) -> Any:
    """An unfitted Prophet for one series (seasonalities by history length, backend attached;
    ``holidays`` in Prophet's frame, or None; ``regressors``: known-ahead columns such as the
    planned promotions)."""
    from retrain.prophet.fast_prophet import FastProphet

    _quiet()
    learns = seasonalities(days)
    model = FastProphet(
        changepoint_prior_scale=params.changepoint_prior_scale,
        seasonality_prior_scale=params.seasonality_prior_scale,
        seasonality_mode=params.seasonality_mode,
        yearly_seasonality=learns.yearly,
        weekly_seasonality=learns.weekly,
        daily_seasonality=False,
        uncertainty_samples=samples,
        holidays=holidays,
        holidays_prior_scale=params.holidays_prior_scale,
    )
    for name in regressors:
        model.add_regressor(name)
    if backend == "inprocess":
        from retrain.prophet.backend import attach_backend

        attach_backend(model)
    return model


def fit_prophet(
    start: date,
    values: np.ndarray,
    params: Params,
    options: FitOptions,
    init: Mapping[str, Any] | None = None,
    intervals: bool = True,
    holidays: pd.DataFrame | None = None,
    regressors: pd.DataFrame | None = None,
) -> Any:
    """A fitted Prophet model; ``init`` (last fitted values) is used where its shapes match.

    ``intervals=False`` skips uncertainty sampling (validation folds only need ``yhat``).
    NaN values are missing days (Prophet leaves them out of the fit). ``regressors``: one
    column per regressor, one row per day from ``start`` (the forecast's days too).
    """
    samples = options.uncertainty_samples if intervals else 0
    names = tuple(regressors.columns) if regressors is not None else ()
    model = new_model(params, len(values), samples, options.backend, holidays, names)
    kwargs: dict[str, Any] = {}
    if options.backend == "cmdstan":
        kwargs["output_dir"] = str(options.fit_dir)
    if init:
        kwargs["init"] = {k: np.asarray(v, dtype=float) for k, v in init.items()}
    began = time.perf_counter()
    try:
        model.fit(history_frame(start, values, regressors), **kwargs)
    finally:
        options.stats.fits += 1
        options.stats.seconds += time.perf_counter() - began
    return model


def predict_horizon(
    model: Any, through: date, horizon: int, regressors: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``ds, yhat, yhat_lower, yhat_upper`` for the ``horizon`` days after ``through``
    (``regressors`` as :func:`fit_prophet` takes them, covering those days)."""
    from retrain.prophet.predict import predict_frame

    dates = pd.date_range(through + timedelta(days=1), periods=horizon)
    fast = predict_frame(model, dates)
    if fast is not None:
        return fast
    future = pd.DataFrame({"ds": dates})
    if model.extra_regressors:
        if regressors is None:
            raise ValueError("this Prophet model takes regressors; pass their future values")
        ahead = regressors.reindex(dates)
        for name in model.extra_regressors:
            future[name] = ahead[name].to_numpy(float)
    out: pd.DataFrame = model.predict(future)
    if "yhat_lower" not in out:  # no uncertainty samples: a zero-width interval
        out["yhat_lower"] = out["yhat_upper"] = out["yhat"]
    return out[["ds", "yhat", "yhat_lower", "yhat_upper"]]


def score_params(
    history: History, params: Params, folds: list[Fold], options: FitOptions
) -> ScoredParams:
    """Fit on each fold's past, forecast its window, average the errors."""
    maes, mases = [], []
    for fold in folds:
        train = history.values[: fold.cutoff]
        actual = history.values[fold.cutoff : fold.cutoff + fold.horizon]
        model = fit_prophet(history.start, train, params, options, intervals=False)
        through = history.start + timedelta(days=fold.cutoff - 1)
        yhat = predict_horizon(model, through, fold.horizon)["yhat"].to_numpy()
        maes.append(float(np.mean(np.abs(actual - yhat))))
        mases.append(mase(actual, yhat, train))
    return ScoredParams(params, float(np.mean(maes)), float(np.mean(mases)))


def stan_init_of(model: Any) -> dict[str, list[float] | float]:
    """The fitted values of a model, in the shape ``fit(init=...)`` takes, as plain data."""
    out: dict[str, list[float] | float] = {}
    for name in ("k", "m", "sigma_obs"):
        out[name] = float(np.asarray(model.params[name]).ravel()[0])
    for name in ("delta", "beta"):
        out[name] = [float(x) for x in np.asarray(model.params[name]).ravel()]
    return out
