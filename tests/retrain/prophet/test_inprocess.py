"""The in-process fit is the same model as cmdstan's: same forecasts, an optimum as good."""

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from retrain.kernel.series import History, rolling_folds
from retrain.prophet.backend import InProcessBackend
from retrain.prophet.fit import (
    FitOptions,
    FitStats,
    Params,
    history_frame,
    new_model,
    score_params,
)
from retrain.prophet.folds import FoldScorer, _Reference, fold_inputs
from retrain.prophet.inprocess import log_posterior
from tests.support.data import real_series


def shaped_series() -> list[pd.DataFrame]:
    """Slow movers with many zero days, and a trend that breaks."""
    rng = np.random.default_rng(11)
    ds = pd.date_range("2022-01-01", periods=600, freq="D")
    t = np.arange(600)
    slow = rng.poisson(0.4 * (1 + 0.5 * np.sin(2 * np.pi * t / 7)))
    broken = 20 + 0.05 * t - 0.12 * np.maximum(t - 400, 0) + rng.normal(0, 2, 600)
    spiky = np.where(rng.random(600) < 0.1, 30.0, 2.0) + rng.poisson(1, 600)
    return [pd.DataFrame({"ds": ds, "y": y.astype(float)}) for y in (slow, broken, spiky)]


def fit(frame: pd.DataFrame, mode: str, priors: tuple[float, float], backend: str) -> Any:
    from prophet import Prophet

    for name in ("cmdstanpy", "prophet"):
        logging.getLogger(name).setLevel(logging.ERROR)
    model = Prophet(
        seasonality_mode=mode,
        changepoint_prior_scale=priors[0],
        seasonality_prior_scale=priors[1],
        yearly_seasonality=True,
        weekly_seasonality=True,
        daily_seasonality=False,
        uncertainty_samples=0,
    )
    if backend == "inprocess":
        model.stan_backend = InProcessBackend()
    model.fit(frame)
    return model


CASES = [
    (mode, priors)
    for mode in ("additive", "multiplicative")
    for priors in ((0.05, 10.0), (0.3, 0.1))  # Prophet's defaults; tuned-looking priors
]


def compare(frame: pd.DataFrame, mode: str, priors: tuple[float, float]) -> tuple[Any, float]:
    """Point-wise relative forecast differences, and our log posterior minus cmdstan's."""
    ours = fit(frame, mode, priors, "inprocess")
    theirs = fit(frame, mode, priors, "cmdstan")
    assert ours.stan_backend.fallbacks == 0
    future = ours.make_future_dataframe(28, include_history=False)
    a = ours.predict(future)["yhat"].to_numpy()
    b = theirs.predict(future)["yhat"].to_numpy()
    # Relative to the point, or to the series' level where a point sits near zero.
    level = max(float(np.mean(np.abs(b))), 1e-9)
    data = asdict(ours.preprocess(frame))
    gap = log_posterior(data, ours.params) - log_posterior(data, theirs.params)
    return np.abs(a - b) / np.maximum(np.abs(b), level), gap


@pytest.mark.parametrize(("mode", "priors"), CASES)
def test_forecasts_and_optimum_match_cmdstan(mode: str, priors: tuple[float, float]) -> None:
    real = [compare(frame, mode, priors) for frame in real_series()]
    diffs = np.concatenate([d for d, _ in real])
    assert np.median(diffs) <= 0.005, np.median(diffs)
    assert diffs.max() <= 0.03, diffs.max()
    # Slow movers and spiky series have flat posteriors where cmdstan stops early: their
    # forecasts may differ more, but the in-process optimum must never be the worse one.
    shaped = [compare(frame, mode, priors) for frame in shaped_series()]
    for _, gap in real + shaped:
        assert gap >= -0.01, gap


def test_cached_folds_equal_the_full_prophet_path(tmp_path: Path) -> None:
    frame = real_series()[0]
    history = History(frame["ds"].iloc[0].date(), frame["y"].to_numpy(float)[-500:])
    folds = rolling_folds(len(history.values), 28, 2, 56)
    options = FitOptions(tmp_path, "inprocess", 0, FitStats())
    strict = FoldScorer(history, folds, options, strict=True)
    trial = FoldScorer(history, folds, options)  # cmdstan's stopping rule: ranking only
    for params in (Params(), Params(0.2, 0.5, "multiplicative"), Params(0.01, 3.0, "additive")):
        full = score_params(history, params, folds, options)
        assert strict(params).mae == pytest.approx(full.mae, rel=1e-6)
        assert strict(params).mase == pytest.approx(full.mase, rel=1e-6)
        assert trial(params).mae == pytest.approx(full.mae, rel=1e-3)
    assert len(trial._prepared) == len(folds), "each fold prepared once, for both modes"
    assert len(trial._references) == 1, "one Prophet preprocess for all folds"


@pytest.mark.parametrize("days", [60, 364, 365, 500, 700])
def test_fold_inputs_are_prophets_own(days: int) -> None:
    frame = real_series()[1]
    start = frame["ds"].iloc[-days - 40].date()
    values = frame["y"].to_numpy(float)[-days - 40 :]
    values[:3] = 0.0
    cases = [values[:days], np.zeros(days)]  # an all-zero past: Prophet scales by 1
    for train in cases:
        history = History(start, np.concatenate([train, values[days:]]))
        ours, y_scale = fold_inputs(train, _Reference(history, days))
        model = new_model(Params(), days, samples=0)
        theirs = asdict(model.preprocess(history_frame(history.start, train)))
        assert y_scale == model.y_scale
        for name, value in theirs.items():
            if name != "tau":
                np.testing.assert_allclose(ours[name], value, rtol=1e-12, err_msg=name)


def test_logistic_growth_falls_back_to_cmdstan() -> None:
    from prophet import Prophet

    frame = shaped_series()[1].assign(cap=60.0)
    model = Prophet(growth="logistic", uncertainty_samples=0)
    backend = InProcessBackend()
    model.stan_backend = backend
    model.fit(frame)
    assert backend.fallbacks == 1 and model.params["k"].shape == (1, 1)


def test_fast_prophet_builds_the_same_inputs_and_forecasts() -> None:
    from prophet import Prophet

    from retrain.prophet.fast_prophet import FastProphet

    frame = real_series()[2]
    models = []
    for cls in (Prophet, FastProphet):
        model = cls(
            seasonality_mode="multiplicative", yearly_seasonality=True, uncertainty_samples=0
        )
        model.stan_backend = InProcessBackend()
        models.append((model, asdict(model.preprocess(frame))))
    (_, a), (_, b) = models
    assert np.allclose(np.asarray(a["X"]), np.asarray(b["X"]), rtol=0, atol=1e-9)
    assert list(a["s_m"]) == list(b["s_m"]) and list(a["sigmas"]) == list(b["sigmas"])
    plain, fast = (
        cls(seasonality_mode="multiplicative", yearly_seasonality=True, uncertainty_samples=0)
        for cls in (Prophet, FastProphet)
    )
    for model in (plain, fast):
        model.stan_backend = InProcessBackend()
        model.fit(frame)
    future = plain.make_future_dataframe(28, include_history=False)
    assert np.allclose(plain.predict(future)["yhat"], fast.predict(future)["yhat"], rtol=1e-5)
