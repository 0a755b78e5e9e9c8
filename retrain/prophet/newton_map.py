"""Prophet's MAP by Newton steps on small L1-penalised quadratics, instead of L-BFGS.

Additive. With every feature additive (and a linear trend) the mean is linear in
``theta = (k, m, delta, beta)``: ``mu = Z theta``. The data then enter only through
``G = Z'Z``, ``b = Z'y`` and ``y'y`` (``p x p`` with ``p ~ 80``, built once per data set), and
the negative log posterior is

    T log(sigma) + (y'y - 2 b'theta + theta'G theta) / (2 sigma^2)
        + theta'P theta / 2 + |delta|_1 / tau + 2 sigma^2

For a fixed sigma that is a quadratic with an L1 term on delta, solved exactly by an
active-set (feature-sign) method; for a fixed theta, sigma has a closed form. Alternating the
two never raises the objective: sigma's profile is concave in the residual sum of squares, so
each theta step minimises a majoriser of it. Warm-started, each round is one or two solves of
a ``p x p`` system, against hundreds of gradient evaluations over all T rows for L-BFGS.

Multiplicative. ``mu = trend * (1 + X beta)`` is bilinear in (trend params, beta). Each round
takes the exact Hessian of the smooth part (Gauss-Newton's ``J'J`` plus the cross term the
residuals bring) and solves the penalised quadratic model exactly, then backtracks until the
objective falls, then updates sigma: proximal Newton, about 5-15 rounds to machine precision.

Measured on Kaggle folds: the same optimum as L-BFGS-B run to a gradient of 1e-9 (log
posteriors within 1e-11), and never a worse one; ~1 ms additive, ~3-8 ms multiplicative.
"""

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

__all__ = ["Gram", "Prior", "additive_map", "lasso_qp", "multiplicative_map", "sigma_for"]


@dataclass(frozen=True)
class Gram:
    """The sufficient statistics of a linear-Gaussian fit: ``Z'Z``, ``Z'y``, ``y'y`` and T."""

    G: np.ndarray
    b: np.ndarray
    yy: float
    T: int

    @classmethod
    def of(cls, Z: np.ndarray, y: np.ndarray) -> "Gram":
        return cls(Z.T @ Z, Z.T @ y, float(y @ y), len(y))

    def rss(self, theta: np.ndarray) -> float:
        return max(self.yy - 2.0 * float(self.b @ theta) + float(theta @ self.G @ theta), 0.0)


@dataclass(frozen=True)
class Prior:
    """The parameters' prior terms: ``theta' diag(precision) theta / 2 + lam * |theta[pen]|_1``."""

    precision: np.ndarray
    lam: float
    pen: np.ndarray

    def value(self, theta: np.ndarray) -> float:
        return 0.5 * float(theta @ (self.precision * theta)) + self.lam * float(
            np.abs(theta[self.pen]).sum()
        )


def _line_search(
    Q: np.ndarray, c: np.ndarray, lam: float, pen: np.ndarray, x: np.ndarray, d: np.ndarray
) -> float:
    """The exact minimiser over ``t`` in [0, 1] of the (convex, piecewise quadratic) objective
    along ``x + t d``."""
    slope0 = float((Q @ x - c) @ d)
    curve = float(d @ Q @ d)
    moving = pen & (d != 0)
    xs, ds = x[moving], d[moving]
    cross = -xs / ds
    breaks = np.unique(cross[(cross > 0) & (cross < 1)])
    edges = np.concatenate([[0.0], breaks, [1.0]])
    if curve <= 0:  # d = 0: already there
        return 1.0
    for lo, hi in pairwise(edges):
        slope = slope0 + lam * float(np.sign(xs + 0.5 * (lo + hi) * ds) @ ds)
        best = -slope / curve
        if best <= hi:
            # Within rounding of the target counts as reaching it, or steps could shrink forever.
            return 1.0 if best > 1.0 - 1e-9 else max(best, lo)
    return 1.0


def lasso_qp(
    Q: np.ndarray,
    c: np.ndarray,
    lam: float,
    pen: np.ndarray,
    x0: np.ndarray,
    max_steps: int = 200,
) -> np.ndarray | None:
    """``argmin_x x'Qx/2 - c'x + lam * sum(|x_j|, j in pen)`` for a positive definite ``Q``.

    Feature-sign search: guess the signs of the penalised coordinates, solve the linear system
    on the non-zero ones, move as far towards it as the true objective keeps falling, and add
    zero coordinates whose gradient exceeds ``lam``. Each step lowers the objective; None when
    it has not settled after ``max_steps`` (the caller falls back to a general optimiser).
    """
    x = x0.astype(float, copy=True)
    signs = np.where(pen, np.sign(x), 0.0)
    settled = False
    for _ in range(max_steps):
        if settled:
            # The non-zero coordinates are optimal: let in the zero one that most wants in.
            grad = Q @ x - c
            excess = np.where(pen & (signs == 0), np.abs(grad) - lam * (1 + 1e-9), 0.0)
            j = int(np.argmax(excess))
            if excess[j] <= 0:
                return x
            signs[j] = -np.sign(grad[j])
        active = ~pen | (signs != 0)
        target = np.zeros_like(x)
        try:
            target[active] = np.linalg.solve(
                Q[np.ix_(active, active)], c[active] - lam * signs[active]
            )
        except np.linalg.LinAlgError:
            return None
        if np.all(np.sign(target[pen & active]) == signs[pen & active]):
            # No sign flips on the way: the objective is the solved quadratic all along.
            x, settled = target, True
        else:
            step = _line_search(Q, c, lam, pen, x, target - x)
            x, settled = (target if step == 1.0 else x + step * (target - x)), False
        signs = np.where(pen, np.sign(x), 0.0)
    return None


def sigma_for(rss: float, T: int) -> float:
    """The sigma minimising ``T log(sigma) + rss / (2 sigma^2) + 2 sigma^2``."""
    return float(np.sqrt((-T + np.sqrt(T * T + 16.0 * rss)) / 8.0))


def additive_map(
    gram: Gram, prior: Prior, theta0: np.ndarray, sigma0: float, rtol: float, max_rounds: int = 500
) -> tuple[np.ndarray, float] | None:
    """``(theta, sigma)`` at the MAP (see the module docstring); None if it did not converge.

    Stops when a round moves sigma^2 by less than ``rtol`` relative.
    """
    theta = theta0
    s2 = sigma0**2
    precision = np.diag(prior.precision)
    for _ in range(max_rounds):
        found = lasso_qp(gram.G / s2 + precision, gram.b / s2, prior.lam, prior.pen, theta)
        if found is None:
            return None
        theta = found
        s2_new = sigma_for(gram.rss(theta), gram.T) ** 2
        if s2_new <= 0:
            return None
        if abs(s2_new - s2) <= rtol * s2:
            return theta, float(np.sqrt(s2_new))
        s2 = s2_new
    return None


def multiplicative_map(
    Zt: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    prior: Prior,
    theta0: np.ndarray,
    sigma0: float,
    rtol: float,
    max_rounds: int = 200,
) -> tuple[np.ndarray, float] | None:
    """``(theta, sigma)`` at the MAP of ``y ~ N((Zt a) * (1 + X beta), sigma)``, ``theta = (a,
    beta)``; None if it did not converge. Stops when a round lowers the objective by less than
    ``rtol`` relative."""
    T, nt = len(y), Zt.shape[1]
    penalty = np.diag(prior.precision)

    def parts(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        trend = Zt @ theta[:nt]
        w = 1.0 + X @ theta[nt:]
        return trend, w, y - trend * w

    def smooth(theta: np.ndarray, rss: float, s2: float) -> float:
        return rss / (2 * s2) + prior.value(theta)

    theta, s2 = theta0.astype(float, copy=True), sigma0**2
    trend, w, r = parts(theta)
    rss = float(r @ r)
    last = np.inf
    for _ in range(max_rounds):
        J = np.concatenate([Zt * w[:, None], X * trend[:, None]], axis=1)
        gauss = J.T @ J
        cross = Zt.T @ (X * r[:, None])  # the residuals' share of the Hessian
        H = gauss.copy()
        H[:nt, nt:] -= cross
        H[nt:, :nt] -= cross.T
        H = H / s2 + penalty
        try:
            np.linalg.cholesky(H)
        except np.linalg.LinAlgError:  # far from the optimum: Gauss-Newton's model is convex
            H = gauss / s2 + penalty
        grad = -(J.T @ r) / s2 + prior.precision * theta
        target = lasso_qp(H, H @ theta - grad, prior.lam, prior.pen, theta)
        if target is None:
            return None
        before, step = smooth(theta, rss, s2), 1.0
        while True:
            trial = theta + step * (target - theta)
            t_trend, t_w, t_r = parts(trial)
            t_rss = float(t_r @ t_r)
            if smooth(trial, t_rss, s2) <= before:
                break
            step *= 0.5
            if step < 1e-8:  # no descent along Newton's direction: at the optimum or stuck
                trial, t_trend, t_w, t_r, t_rss = theta, trend, w, r, rss
                break
        theta, trend, w, r, rss = trial, t_trend, t_w, t_r, t_rss
        s2 = sigma_for(rss, T) ** 2
        if s2 <= 0:
            return None
        total = smooth(theta, rss, s2) + 0.5 * T * np.log(s2) + 2 * s2
        if last - total <= rtol * abs(total):
            return theta, float(np.sqrt(s2))
        last = total
    return None
