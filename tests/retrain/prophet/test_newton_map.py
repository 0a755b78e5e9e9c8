"""The Newton solvers find the optimum: KKT conditions hold, and L-BFGS-B finds nothing better."""

import logging
from dataclasses import asdict
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from retrain.prophet.inprocess import MapProblem, _projected_gradient, optimize
from retrain.prophet.newton_map import lasso_qp


def kkt_gap(Q: np.ndarray, c: np.ndarray, lam: float, pen: np.ndarray, x: np.ndarray) -> float:
    """How far ``x`` is from the optimality conditions of the L1-penalised quadratic."""
    grad = Q @ x - c
    free = np.where(pen & (x != 0), grad + lam * np.sign(x), grad)
    at_zero = np.maximum(np.abs(grad) - lam, 0.0)
    return float(np.max(np.abs(np.where(pen & (x == 0), at_zero, free))))


@pytest.mark.parametrize("seed", range(6))
def test_lasso_qp_meets_the_optimality_conditions_from_any_start(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 30
    A = rng.normal(size=(80, n))
    Q = A.T @ A + 0.1 * np.eye(n)
    c = rng.normal(size=n) * 20
    pen = np.zeros(n, dtype=bool)
    pen[5:25] = True
    lam = 5.0
    for start in (np.zeros(n), rng.normal(size=n) * 3):  # cold, and signs mostly wrong
        x = lasso_qp(Q, c, lam, pen, start)
        assert x is not None
        assert kkt_gap(Q, c, lam, pen, x) <= 1e-8 * np.abs(c).max()
        assert 0 < np.count_nonzero(x[pen]) < pen.sum()  # the L1 term bites, not everywhere


def stan_data(mode: Literal["additive", "multiplicative"], seed: int) -> dict[str, Any]:
    from prophet import Prophet

    rng = np.random.default_rng(seed)
    t = np.arange(500)
    level = 30 + 0.02 * t - 0.05 * np.maximum(t - 300, 0)
    season = 1 + 0.3 * np.sin(2 * np.pi * t / 7) + 0.2 * np.cos(2 * np.pi * t / 365.25)
    y = level * season + rng.normal(0, 3, len(t))
    frame = pd.DataFrame({"ds": pd.date_range("2021-01-01", periods=len(t)), "y": y})
    model = Prophet(seasonality_mode=mode, yearly_seasonality=True, changepoint_prior_scale=0.3)
    return asdict(model.preprocess(frame))


def lbfgs_optimum(problem: MapProblem) -> float:
    """The log posterior L-BFGS-B reaches at a projected gradient of 1e-10."""
    S, K = problem.S, problem.K
    z0 = np.concatenate([[0.0, 0.5], np.zeros(2 * S), [0.1], np.zeros(K)])
    bounds = [(None, None)] * 2 + [(0.0, None)] * (2 * S) + [(1e-10, None)] + [(None, None)] * K
    result = minimize(
        problem.objective,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 20000, "ftol": 0.0, "gtol": 1e-10},
    )
    return -float(result.fun)


@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
@pytest.mark.parametrize("seed", [1, 2])
def test_newton_reaches_the_optimum_l_bfgs_b_finds(
    mode: Literal["additive", "multiplicative"], seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    problem = MapProblem(stan_data(mode, seed))
    assert (problem.gram is not None) == (mode == "additive") and problem.pure_m != (
        mode == "additive"
    )
    init = {"k": 0.0, "m": 0.5, "delta": np.zeros(problem.S), "beta": np.zeros(problem.K)}
    with caplog.at_level(logging.INFO, logger="shelfcast.inprocess"):
        found = optimize(problem, {**init, "sigma_obs": 1.0})
    fallbacks = [r for r in caplog.records if r.name == "shelfcast.inprocess"]
    assert found is not None and not fallbacks, "solved by Newton, no fallback"
    k, m, delta, sigma, beta, lp = found
    z = np.concatenate([[k, m], np.maximum(delta, 0), np.maximum(-delta, 0), [sigma], beta])
    assert _projected_gradient(problem, z) <= 1e-6
    assert lp >= lbfgs_optimum(problem) - 1e-8
    assert 0 < np.count_nonzero(delta) < problem.S  # the Laplace prior zeroes most changes
