"""Validation folds prepared once per study, re-fitted per trial without Prophet's set-up.

Between trials only the priors change (``changepoint_prior_scale`` is tau,
``seasonality_prior_scale`` scales the seasonal sigmas) and the seasonality mode (which
features are additive or multiplicative). The scaled data, seasonal features, changepoints
and the future's features are the same, so each fold is prepared by Prophet once and each
trial runs only the in-process optimiser and Prophet's predict formula:
``yhat = y_scale * (trend * (1 + X_m beta) + X_a beta)``. Trial fits stop on cmdstan's own
default tolerance (see :func:`retrain.inprocess.optimize`): they only rank parameter sets.
"""

import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from retrain.errors import RetrainError
from retrain.inprocess import MapProblem, optimize
from retrain.prophet_fit import (
    FitOptions,
    Params,
    ScoredParams,
    fit_prophet,
    history_frame,
    new_model,
    predict_horizon,
)
from retrain.series import Fold, History, mase

__all__ = ["FoldScorer"]


class _Prepared:
    """One fold: Prophet's inputs and the future's features, for either seasonality mode.

    Without regressors or holidays every feature column is a seasonality, and the mode only
    says whether it enters additively (``s_a``) or multiplicatively (``s_m``); Prophet's
    scaling, features, changepoints and priors do not depend on it. So one preprocess serves
    both modes.
    """

    def __init__(self, history: History, fold: Fold) -> None:
        train = history.values[: fold.cutoff]
        model = new_model(Params(seasonality_mode="additive"), len(train), samples=0)
        inputs = model.preprocess(history_frame(history.start, train))
        if model.extra_regressors or model.holidays is not None:
            raise RetrainError("fold sharing assumes seasonalities only; use one fold per mode")
        data: dict[str, Any] = asdict(inputs)
        data["X"] = np.asarray(inputs.X, dtype=float)
        ones, zeros = np.ones(inputs.K), np.zeros(inputs.K)
        additive = MapProblem({**data, "s_a": ones, "s_m": zeros})
        multiplicative = additive.with_modes(s_a=zeros, s_m=ones)
        self.problems = {"additive": additive, "multiplicative": multiplicative}
        self.init = asdict(model.calculate_initial_params(inputs.K))
        self.base_sps = model.seasonality_prior_scale
        self.base_sigmas = np.asarray(data["sigmas"], dtype=float)
        first = history.start + timedelta(days=fold.cutoff)
        future = model.setup_dataframe(
            pd.DataFrame({"ds": pd.date_range(first, periods=fold.horizon, freq="D")})
        )
        self.x = np.asarray(model.make_all_seasonality_features(future)[0], dtype=float)
        t = np.asarray(future["t"], dtype=float)
        self.t, self.basis = t, additive.trend_basis(t)
        self.y_scale = float(model.y_scale)

    def forecast(self, params: Params, strict: bool) -> np.ndarray | None:
        sigmas = self.base_sigmas * (params.seasonality_prior_scale / self.base_sps)
        base = self.problems[params.seasonality_mode]
        problem = base.with_priors(params.changepoint_prior_scale, sigmas)
        found = optimize(problem, self.init, strict=strict)
        if found is None:
            return None
        k, m, delta, _, beta, _ = found
        trend = m if problem.flat else k * self.t + m + self.basis @ delta
        season = self.x @ beta
        if params.seasonality_mode == "multiplicative":
            out: np.ndarray = self.y_scale * trend * (1 + season)
        else:
            out = self.y_scale * (trend + season)
        return out


class FoldScorer:
    """Scores parameter sets on rolling-origin folds; in process, with what it can reuse.

    ``strict`` fits each fold to the served models' tolerance instead of cmdstan's default.
    """

    def __init__(
        self, history: History, folds: list[Fold], options: FitOptions, strict: bool = False
    ) -> None:
        self.history = history
        self.strict = strict
        self.folds = folds
        self.options = options
        self._prepared: dict[int, _Prepared] = {}

    def _fold(self, index: int) -> _Prepared:
        if index not in self._prepared:
            self._prepared[index] = _Prepared(self.history, self.folds[index])
        return self._prepared[index]

    def __call__(self, params: Params) -> ScoredParams:
        maes, mases = [], []
        for index, fold in enumerate(self.folds):
            train = self.history.values[: fold.cutoff]
            actual = self.history.values[fold.cutoff : fold.cutoff + fold.horizon]
            self.options.stats.fits += 1
            began = time.perf_counter()
            yhat = self._fold(index).forecast(params, self.strict)
            self.options.stats.seconds += time.perf_counter() - began
            if yhat is None:  # did not converge: the full Prophet path (cmdstan) decides
                through = self.history.start + timedelta(days=fold.cutoff - 1)
                cmdstan = FitOptions(self.options.fit_dir, "cmdstan", 0, self.options.stats)
                model = fit_prophet(self.history.start, train, params, cmdstan, intervals=False)
                yhat = predict_horizon(model, through, fold.horizon)["yhat"].to_numpy()
            maes.append(float(np.mean(np.abs(actual - yhat))))
            mases.append(mase(actual, yhat, train))
        return ScoredParams(params, float(np.mean(maes)), float(np.mean(mases)))
