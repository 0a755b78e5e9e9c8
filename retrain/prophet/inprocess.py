"""Prophet's MAP fit inside the Python process: no cmdstan process, no JSON/CSV files.

The same posterior as ``prophet/stan_model/prophet.stan`` (linear and flat trend):
  k, m ~ N(0, 5);  delta ~ Laplace(0, tau);  sigma_obs ~ N+(0, 0.5);  beta ~ N(0, sigmas);
  y ~ N(X_sa beta + trend * (1 + X_sm beta), sigma_obs)
maximised like Stan's ``optimize`` (no Jacobian term). Linear-trend models whose features are
all additive or all multiplicative (every model Shelfcast fits) are solved by Newton steps
(:mod:`retrain.prophet.newton_map`). The rest, and any Newton solve that does not settle, go to
scipy's L-BFGS-B with an analytic gradient; its Laplace prior's kink is removed by writing
delta = d_plus - d_minus with both parts >= 0: at the optimum one of each pair is zero, so
the penalty is exactly |delta| / tau. The linear trend is linear in (k, m, delta):
trend = k t + m + B delta, B[i, j] = A[i, j] * (t[i] - t_change[j]), built once per data set.

Logistic growth, and any fit that does not converge, go to cmdstan: Prophet's side of this
(its ``IStanBackend``) is :mod:`retrain.prophet.backend`, so that importing the solver does not
import Prophet.
"""

import logging
from typing import Any

import numpy as np

from retrain.prophet.newton_map import Gram, Prior, additive_map, multiplicative_map

__all__ = [
    "LOGISTIC",
    "MapProblem",
    "Optimum",
    "log_posterior",
    "optimize",
]

log = logging.getLogger("shelfcast.inprocess")

_LINEAR, LOGISTIC, _FLAT = 0, 1, 2  # stan_data["trend_indicator"]


class MapProblem:
    """The data of one fit, with everything that does not depend on the parameters."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.y = np.asarray(data["y"], dtype=float)
        self.t = np.asarray(data["t"], dtype=float)
        self.T = len(self.y)
        self.S = int(data["S"])
        self.K = int(data["K"])
        self.tau = float(data["tau"])
        self.flat = int(data["trend_indicator"]) == _FLAT
        self.X = X = np.asarray(data["X"], dtype=float).reshape(self.T, self.K)
        s_a = np.asarray(data["s_a"], dtype=float)
        s_m = np.asarray(data["s_m"], dtype=float)
        self.X_sa = X * s_a
        self.X_sm = X * s_m
        self.has_m = bool(s_m.any())
        self.inv_var_beta = 1.0 / np.asarray(data["sigmas"], dtype=float) ** 2
        self.t_change = np.asarray(data["t_change"], dtype=float).reshape(self.S)
        self.B = self.trend_basis(self.t)
        self.Zt = np.column_stack([self.t, np.ones(self.T), self.B])
        self.pure_m = self.has_m and not s_a.any()
        self.gram = self._gram()

    def _gram(self) -> Gram | None:
        """With every feature additive and a linear trend the mean is linear in
        (k, m, delta, beta): its sufficient statistics are all the exact solver needs."""
        if self.has_m or self.flat:
            return None
        return Gram.of(np.column_stack([self.Zt, self.X_sa]), self.y)

    def trend_basis(self, t: np.ndarray) -> np.ndarray:
        """B[i, j] = (t_i >= t_change_j) * (t_i - t_change_j): the trend is k t + m + B delta."""
        A = (t[:, None] >= self.t_change[None, :]).astype(float)
        out: np.ndarray = A * (t[:, None] - self.t_change[None, :])
        return out

    def with_priors(self, tau: float, sigmas: np.ndarray) -> "MapProblem":
        """The same data under other prior scales (a new trial), sharing every array."""
        clone = object.__new__(MapProblem)
        clone.__dict__.update(self.__dict__)
        clone.tau = tau
        clone.inv_var_beta = 1.0 / np.asarray(sigmas, dtype=float) ** 2
        return clone

    def with_modes(self, s_a: np.ndarray, s_m: np.ndarray) -> "MapProblem":
        """The same data with features switched between additive and multiplicative."""
        clone = object.__new__(MapProblem)
        clone.__dict__.update(self.__dict__)
        clone.data = {**self.data, "s_a": s_a, "s_m": s_m}
        clone.X_sa, clone.X_sm = self.X * s_a, self.X * s_m
        clone.has_m = bool(np.any(s_m))
        clone.pure_m = clone.has_m and not np.any(s_a)
        clone.gram = clone._gram()
        return clone

    def unpack(self, z: np.ndarray) -> tuple[float, float, np.ndarray, float, np.ndarray]:
        S = self.S
        delta = z[2 : 2 + S] - z[2 + S : 2 + 2 * S]
        return z[0], z[1], delta, z[2 + 2 * S], z[3 + 2 * S :]

    def trend(self, k: float, m: float, delta: np.ndarray) -> np.ndarray:
        if self.flat:
            return np.full(self.T, m)
        out: np.ndarray = k * self.t + m + self.B @ delta
        return out

    def objective(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """Negative log posterior (Stan's, without constants) and its gradient."""
        S = self.S
        k, m, delta, sigma, beta = self.unpack(z)
        trend = self.trend(k, m, delta)
        w = 1.0 + self.X_sm @ beta if self.has_m else np.ones(self.T)
        r = self.y - (self.X_sa @ beta + trend * w)
        rss = float(r @ r)
        nlp = (
            self.T * np.log(sigma)
            + rss / (2 * sigma**2)
            + (k * k + m * m) / 50.0
            + float(np.sum(z[2 : 2 + 2 * S])) / self.tau
            + 2.0 * sigma**2
            + 0.5 * float(beta**2 @ self.inv_var_beta)
        )
        g = -r / sigma**2  # d nlp / d mu
        gw = g * w
        grad = np.empty_like(z)
        if self.flat:
            grad[0] = k / 25.0
            d_delta = np.zeros(S)
        else:
            grad[0] = gw @ self.t + k / 25.0
            d_delta = self.B.T @ gw
        grad[1] = gw.sum() + m / 25.0
        grad[2 : 2 + S] = d_delta + 1.0 / self.tau
        grad[2 + S : 2 + 2 * S] = -d_delta + 1.0 / self.tau
        grad[2 + 2 * S] = self.T / sigma - rss / sigma**3 + 4.0 * sigma
        d_beta = self.X_sa.T @ g + beta * self.inv_var_beta
        if self.has_m:
            d_beta += self.X_sm.T @ (g * trend)
        grad[3 + 2 * S :] = d_beta
        return nlp, grad


Optimum = tuple[float, float, np.ndarray, float, np.ndarray, float]


# cmdstan's default stopping rule for L-BFGS: tol_rel_obj = 1e4 times machine epsilon.
CMDSTAN_FTOL = 1e4 * float(np.finfo(float).eps)


def optimize(problem: MapProblem, init: dict[str, Any], *, strict: bool = True) -> Optimum | None:
    """The MAP estimate ``(k, m, delta, sigma_obs, beta, log posterior)``; None: no convergence.

    Newton (see the module docstring) runs to a relative objective change of 1e-12 to 1e-14
    with ``strict`` (served models), 1e-8 to 1e-9 otherwise (trial fits that only rank
    parameter sets). L-BFGS-B runs to a projected gradient of 1e-9 with ``strict``, otherwise
    it stops like cmdstan does by default, on a relative objective change of ~2e-12.
    """
    delta0 = np.asarray(init["delta"], dtype=float).reshape(problem.S)
    beta0 = np.asarray(init["beta"], dtype=float).reshape(problem.K)
    sigma0 = max(float(init["sigma_obs"]), 1e-3)
    k0, m0 = float(init["k"]), float(init["m"])
    if not problem.flat and (problem.gram is not None or problem.pure_m):
        found = _exact(problem, np.concatenate([[k0, m0], delta0, beta0]), sigma0, strict)
        if found is not None:
            return found
        log.info("Newton solver did not settle; trying L-BFGS-B")
    z0 = np.concatenate([[k0, m0], np.maximum(delta0, 0), np.maximum(-delta0, 0), [sigma0], beta0])
    bounds = (
        [(None, None)] * 2
        + [(0.0, None)] * (2 * problem.S)
        + [(1e-10, None)]
        + [(None, None)] * problem.K
    )
    # Imported here: a process that only unpickles a fit's results (the coordinator) need not
    # pay for scipy.optimize.
    from scipy.optimize import minimize

    result = minimize(
        problem.objective,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={
            "maxiter": 3000,
            "maxcor": 10,
            "ftol": 0.0 if strict else CMDSTAN_FTOL,
            "gtol": 1e-9 if strict else 1e-8,
        },
    )
    if not result.success and _projected_gradient(problem, result.x) > 1e-3:
        # With ftol=0 a line search that cannot improve at machine precision ends "abnormally"
        # at the optimum; only a gradient that is still large means it did not converge.
        log.info("in-process optimiser stopped (%s); falling back to cmdstan", result.message)
        return None
    k, m, delta, sigma, beta = problem.unpack(result.x)
    return float(k), float(m), delta, float(sigma), beta, -float(result.fun)


def _exact(problem: MapProblem, theta0: np.ndarray, sigma0: float, strict: bool) -> Optimum | None:
    S = problem.S
    pen = np.zeros(len(theta0), dtype=bool)
    pen[2 : 2 + S] = True
    # k, m ~ N(0, 5); delta ~ Laplace(0, tau); beta ~ N(0, sigmas)
    precision = np.concatenate([[1 / 25.0, 1 / 25.0], np.zeros(S), problem.inv_var_beta])
    prior = Prior(precision, 1.0 / problem.tau, pen)
    if problem.gram is not None:
        found = additive_map(problem.gram, prior, theta0, sigma0, 1e-12 if strict else 1e-8)
    else:
        rtol = 1e-14 if strict else 1e-9
        found = multiplicative_map(problem.Zt, problem.X_sm, problem.y, prior, theta0, sigma0, rtol)
    if found is None:
        return None
    theta, sigma = found
    delta, beta = theta[2 : 2 + S], theta[2 + S :]
    z = np.concatenate([theta[:2], np.maximum(delta, 0), np.maximum(-delta, 0), [sigma], beta])
    return float(theta[0]), float(theta[1]), delta, sigma, beta, -problem.objective(z)[0]


def _projected_gradient(problem: MapProblem, z: np.ndarray) -> float:
    grad = problem.objective(z)[1]
    lower = np.full(len(z), -np.inf)
    lower[2 : 2 + 2 * problem.S] = 0.0
    lower[2 + 2 * problem.S] = 1e-10
    at_bound = (z <= lower + 1e-12) & (grad > 0)
    return float(np.max(np.abs(np.where(at_bound, 0.0, grad))))


def log_posterior(data: dict[str, Any], params: dict[str, Any]) -> float:
    """Stan's log posterior (without constants) at ``params``: to compare two optima."""
    problem = MapProblem(data)
    delta = np.asarray(params["delta"], dtype=float).reshape(-1)
    z = np.concatenate(
        [
            [float(np.ravel(params["k"])[0]), float(np.ravel(params["m"])[0])],
            np.maximum(delta, 0),
            np.maximum(-delta, 0),
            [float(np.ravel(params["sigma_obs"])[0])],
            np.asarray(params["beta"], dtype=float).reshape(-1),
        ]
    )
    return -problem.objective(z)[0]
