"""Validation folds prepared once per study, re-fitted per trial without Prophet's set-up.

Between trials only the priors change (``changepoint_prior_scale`` is tau,
``seasonality_prior_scale`` scales the seasonal sigmas) and the seasonality mode (which
features are additive or multiplicative). The scaled data, seasonal features, changepoints
and the future's features are the same, so each (fold, mode) is prepared by Prophet once and
each trial runs only the in-process optimiser and Prophet's predict formula:
``yhat = y_scale * (trend * (1 + X_m beta) + X_a beta)``.
"""

import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

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
    """One fold in one seasonality mode: Prophet's inputs and the future's features."""

    def __init__(self, history: History, fold: Fold, mode: str) -> None:
        train = history.values[: fold.cutoff]
        model = new_model(Params(seasonality_mode=mode), len(train), samples=0)  # type: ignore[arg-type]
        inputs = model.preprocess(history_frame(history.start, train))
        data: dict[str, Any] = asdict(inputs)
        data["X"] = np.asarray(inputs.X, dtype=float)
        self.problem = MapProblem(data)
        self.init = asdict(model.calculate_initial_params(inputs.K))
        self.base_sps = model.seasonality_prior_scale
        self.base_sigmas = np.asarray(data["sigmas"], dtype=float)
        first = history.start + timedelta(days=fold.cutoff)
        future = model.setup_dataframe(
            pd.DataFrame({"ds": pd.date_range(first, periods=fold.horizon, freq="D")})
        )
        features = model.make_all_seasonality_features(future)[0]
        x = np.asarray(features, dtype=float)
        self.x_add = x * np.asarray(data["s_a"], dtype=float)
        self.x_mul = x * np.asarray(data["s_m"], dtype=float)
        t = np.asarray(future["t"], dtype=float)
        self.t, self.basis = t, self.problem.trend_basis(t)
        self.y_scale = float(model.y_scale)

    def forecast(self, params: Params) -> np.ndarray | None:
        sigmas = self.base_sigmas * (params.seasonality_prior_scale / self.base_sps)
        problem = self.problem.with_priors(params.changepoint_prior_scale, sigmas)
        found = optimize(problem, self.init)
        if found is None:
            return None
        k, m, delta, _, beta, _ = found
        trend = m if problem.flat else k * self.t + m + self.basis @ delta
        out: np.ndarray = self.y_scale * (trend * (1 + self.x_mul @ beta) + self.x_add @ beta)
        return out


class FoldScorer:
    """Scores parameter sets on rolling-origin folds; in process, with what it can reuse."""

    def __init__(self, history: History, folds: list[Fold], options: FitOptions) -> None:
        self.history = history
        self.folds = folds
        self.options = options
        self._prepared: dict[tuple[int, str], _Prepared] = {}

    def _fold(self, index: int, mode: str) -> _Prepared:
        key = (index, mode)
        if key not in self._prepared:
            self._prepared[key] = _Prepared(self.history, self.folds[index], mode)
        return self._prepared[key]

    def __call__(self, params: Params) -> ScoredParams:
        maes, mases = [], []
        for index, fold in enumerate(self.folds):
            train = self.history.values[: fold.cutoff]
            actual = self.history.values[fold.cutoff : fold.cutoff + fold.horizon]
            self.options.stats.fits += 1
            began = time.perf_counter()
            yhat = self._fold(index, params.seasonality_mode).forecast(params)
            self.options.stats.seconds += time.perf_counter() - began
            if yhat is None:  # did not converge: the full Prophet path (cmdstan) decides
                through = self.history.start + timedelta(days=fold.cutoff - 1)
                cmdstan = FitOptions(self.options.fit_dir, "cmdstan", 0, self.options.stats)
                model = fit_prophet(self.history.start, train, params, cmdstan, intervals=False)
                yhat = predict_horizon(model, through, fold.horizon)["yhat"].to_numpy()
            maes.append(float(np.mean(np.abs(actual - yhat))))
            mases.append(mase(actual, yhat, train))
        return ScoredParams(params, float(np.mean(maes)), float(np.mean(mases)))
