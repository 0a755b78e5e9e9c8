"""Validation folds prepared once per study, re-fitted per trial without Prophet's set-up.

Between trials only the priors change (``changepoint_prior_scale`` is tau,
``seasonality_prior_scale`` scales the seasonal sigmas) and the seasonality mode (which
features are additive or multiplicative). The scaled data, seasonal features, changepoints
and the future's features are the same, so each fold is prepared once (its features sliced
from one Prophet preprocess of the whole history, the rest in numpy) and each trial runs
only the in-process optimiser and Prophet's predict formula:
``yhat = y_scale * (trend * (1 + X_m beta) + X_a beta)``. Trial fits stop at a looser
tolerance than served models (see :func:`retrain.prophet.inprocess.optimize`): they only rank
parameter sets.
"""

import time
from datetime import timedelta
from typing import Any

import numpy as np

from retrain.errors import RetrainError
from retrain.kernel.series import Fold, History, mase
from retrain.prophet.fit import (
    FitOptions,
    Params,
    ScoredParams,
    Seasonalities,
    fit_prophet,
    history_frame,
    new_model,
    predict_horizon,
    seasonalities,
)
from retrain.prophet.inprocess import MapProblem, optimize

__all__ = ["FoldScorer"]


class _Reference:
    """One Prophet preprocess of the whole history, shared by every fold with the same
    seasonalities: seasonal features depend on the date alone, so a fold's rows (and its
    forecast window's) are a slice of it. Without regressors or holidays every feature is a
    seasonality and the mode only says whether it enters additively (``s_a``) or
    multiplicatively (``s_m``), so one preprocess also serves both modes.
    """

    def __init__(self, history: History, fold_days: int) -> None:
        model = new_model(Params(seasonality_mode="additive"), fold_days, samples=0)
        inputs = model.preprocess(history_frame(history.start, history.values))
        if model.extra_regressors or model.holidays is not None:
            raise RetrainError("fold sharing assumes seasonalities only; use one fold per mode")
        self.X = np.asarray(inputs.X, dtype=float)
        self.sigmas = np.asarray(inputs.sigmas, dtype=float)
        self.base_sps = float(model.seasonality_prior_scale)
        self.n_changepoints = int(model.n_changepoints)
        self.changepoint_range = float(model.changepoint_range)


def fold_inputs(values: np.ndarray, reference: _Reference) -> tuple[dict[str, Any], float]:
    """Prophet's ``preprocess`` of ``values`` (daily, gap-free, linear growth, absmax scaling)
    with the reference's features, in numpy; and ``y_scale``. Checked against Prophet's own in
    the tests."""
    T = len(values)
    y_scale = float(np.abs(values).max()) or 1.0
    t = np.arange(T) / (T - 1)
    hist_size = int(np.floor(T * reference.changepoint_range))
    S = min(reference.n_changepoints, hist_size - 1)
    cp_index = np.linspace(0, hist_size - 1, S + 1).round().astype(int)[1:]
    K = reference.X.shape[1]
    return (
        {
            "T": T,
            "S": S,
            "K": K,
            "tau": Params().changepoint_prior_scale,  # each trial sets its own
            "trend_indicator": 0,
            "y": values / y_scale,
            "t": t,
            "cap": np.zeros(T),
            "t_change": np.sort(cp_index / (T - 1)),
            "s_a": np.ones(K),
            "s_m": np.zeros(K),
            "X": reference.X[:T],
            "sigmas": reference.sigmas,
        },
        y_scale,
    )


class _Prepared:
    """One fold: the posterior's inputs and the future's features, for either seasonality mode."""

    def __init__(self, history: History, fold: Fold, reference: _Reference) -> None:
        train = history.values[: fold.cutoff]
        data, self.y_scale = fold_inputs(train, reference)
        additive = MapProblem(data)
        zeros, ones = np.zeros(additive.K), np.ones(additive.K)
        multiplicative = additive.with_modes(s_a=zeros, s_m=ones)
        self.problems = {"additive": additive, "multiplicative": multiplicative}
        y = data["y"]
        # Prophet's linear_growth_init, with t running from 0 to 1.
        self.init = {
            "k": float(y[-1] - y[0]),
            "m": float(y[0]),
            "delta": np.zeros(additive.S),
            "beta": np.zeros(additive.K),
            "sigma_obs": 1.0,
        }
        self.base_sps = reference.base_sps
        self.base_sigmas = reference.sigmas
        window = slice(fold.cutoff, fold.cutoff + fold.horizon)
        self.x = reference.X[window]
        self.t = np.arange(window.start, window.stop) / (fold.cutoff - 1)
        self.basis = additive.trend_basis(self.t)

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
        self._references: dict[Seasonalities, _Reference] = {}

    def _fold(self, index: int) -> _Prepared:
        if index not in self._prepared:
            fold = self.folds[index]
            # A fold's model learns the seasonalities its length allows: one reference each.
            kind = seasonalities(fold.cutoff)
            if kind not in self._references:
                self._references[kind] = _Reference(self.history, fold.cutoff)
            self._prepared[index] = _Prepared(self.history, fold, self._references[kind])
        return self._prepared[index]

    def forecasts(self, params: Params) -> list[np.ndarray]:
        """Each fold's forecast of its window by ``params``."""
        out = []
        for index, fold in enumerate(self.folds):
            self.options.stats.fits += 1
            began = time.perf_counter()
            yhat = self._fold(index).forecast(params, self.strict)
            self.options.stats.seconds += time.perf_counter() - began
            if yhat is None:  # did not converge: the full Prophet path (cmdstan) decides
                train = self.history.values[: fold.cutoff]
                through = self.history.start + timedelta(days=fold.cutoff - 1)
                cmdstan = FitOptions(self.options.fit_dir, "cmdstan", 0, self.options.stats)
                model = fit_prophet(self.history.start, train, params, cmdstan, intervals=False)
                yhat = predict_horizon(model, through, fold.horizon)["yhat"].to_numpy()
            out.append(yhat)
        return out

    def __call__(self, params: Params) -> ScoredParams:
        maes, mases = [], []
        for fold, yhat in zip(self.folds, self.forecasts(params), strict=True):
            train = self.history.values[: fold.cutoff]
            actual = self.history.values[fold.cutoff : fold.cutoff + fold.horizon]
            maes.append(float(np.mean(np.abs(actual - yhat))))
            mases.append(mase(actual, yhat, train))
        return ScoredParams(params, float(np.mean(maes)), float(np.mean(mases)))
