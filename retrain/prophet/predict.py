"""Prophet's ``predict`` for the models Shelfcast fits, in numpy.

Measured here: Prophet's predict of 28 days with 100 uncertainty samples costs ~10 ms, nearly
all of it pandas bookkeeping around a few small matrix products. This computes the same
frame from the fitted model's attributes: the same trend, seasonal terms and formula, and
the same simulated trend changes and noise, drawn from numpy's global generator in Prophet's
order (so with one seed both give the same intervals; the tests check it). Models this does
not cover (logistic or flat growth, holidays, regressors, conditional seasonalities, MCMC
samples) return None and go to Prophet.
"""

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["predict_frame"]


def _covered(model: Any) -> bool:
    return bool(
        model.growth == "linear"
        and model.holidays is None
        and not model.extra_regressors
        and not any(props["condition_name"] for props in model.seasonalities.values())
        and np.asarray(model.params["k"]).shape[0] == 1
    )


def _features(model: Any, dates: pd.Series) -> np.ndarray:
    from retrain.prophet.fast_prophet import (
        FastProphet,  # what every Shelfcast model was trained with
    )

    blocks = [
        FastProphet.fourier_series(dates, props["period"], props["fourier_order"])
        for props in model.seasonalities.values()
    ]
    return np.column_stack(blocks) if blocks else np.zeros((len(dates), 0))


def predict_frame(model: Any, dates: pd.DatetimeIndex) -> pd.DataFrame | None:
    """``ds, yhat, yhat_lower, yhat_upper`` for future ``dates`` (after the history), or None
    when the model is not one this module covers."""
    if not _covered(model):
        return None
    t = np.asarray((dates - model.start) / model.t_scale, dtype=float)
    if t.min() <= 1:
        return None  # the in-sample part of Prophet's uncertainty is not reproduced here
    params = {name: np.asarray(value)[0] for name, value in model.params.items()}
    k, m, deltas = float(params["k"].ravel()[0]), float(params["m"].ravel()[0]), params["delta"]
    changepoints = np.asarray(model.changepoints_t)
    X = _features(model, pd.Series(dates))
    s_a = np.asarray(model.train_component_cols["additive_terms"], dtype=float)
    s_m = np.asarray(model.train_component_cols["multiplicative_terms"], dtype=float)
    beta = params["beta"]
    additive = X @ (beta * s_a) * model.y_scale
    multiplicative = X @ (beta * s_m)
    expected = model.piecewise_linear(t, deltas, k, m, changepoints)
    trend = expected * model.y_scale
    out = pd.DataFrame({"ds": dates, "yhat": trend * (1 + multiplicative) + additive})
    samples = int(model.uncertainty_samples or 0)
    if samples == 0:
        out["yhat_lower"] = out["yhat_upper"] = out["yhat"]
        return out
    # Prophet's _sample_uncertainty and sample_model_vectorized, draw for draw.
    step = float(np.diff(t).mean()) if len(t) > 1 else float(np.diff(model.history["t"]).mean())
    mean_delta = float(np.mean(np.abs(deltas))) + 1e-8
    changes = np.random.uniform(size=(samples, len(t))) < len(changepoints) * step
    shifts = np.random.laplace(0, mean_delta, size=changes.shape) * changes
    shifts = (np.hstack([np.zeros((samples, 1)), shifts])[:, :-1] + shifts) / 2
    trends = (expected + shifts.cumsum(axis=1).cumsum(axis=1) * step) * model.y_scale
    noise = np.random.normal(0, float(params["sigma_obs"].ravel()[0]), trends.shape) * model.y_scale
    simulated = trends * (1 + multiplicative) + additive + noise
    width = float(model.interval_width)
    out["yhat_lower"] = model.percentile(simulated, 100 * (1 - width) / 2, axis=0)
    out["yhat_upper"] = model.percentile(simulated, 100 * (1 + width) / 2, axis=0)
    return out
