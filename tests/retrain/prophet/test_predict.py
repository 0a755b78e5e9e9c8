"""The numpy predict is Prophet's: same points and, from the same seed, the same intervals."""

from datetime import timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest

from retrain.prophet.fit import FitOptions, Params, fit_prophet
from retrain.prophet.predict import predict_frame
from tests.support.data import real_series


@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_numpy_predict_equals_prophets(
    mode: Literal["additive", "multiplicative"], tmp_path: Path
) -> None:
    from prophet.serialize import model_from_json, model_to_json

    frame = real_series()[3]
    start = frame["ds"].iloc[0].date()
    options = FitOptions(tmp_path, "inprocess", uncertainty_samples=100)
    model = fit_prophet(start, frame["y"].to_numpy(float), Params(0.2, 1.0, mode), options)
    dates = pd.date_range(frame["ds"].iloc[-1] + timedelta(days=1), periods=28)
    for served in (model, model_from_json(model_to_json(model))):  # fitted, and the champion
        np.random.seed(7)
        ours = predict_frame(served, dates)
        np.random.seed(7)
        theirs = served.predict(pd.DataFrame({"ds": dates}))
        assert ours is not None
        for column in ("yhat", "yhat_lower", "yhat_upper"):
            np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-9, err_msg=column)
        assert (ours["yhat_lower"] < ours["yhat"]).all() and (
            ours["yhat"] < ours["yhat_upper"]
        ).all()


def test_models_it_does_not_cover_go_to_prophet(tmp_path: Path) -> None:
    from prophet import Prophet

    frame = real_series()[0].assign(cap=200.0)
    model = Prophet(growth="logistic", uncertainty_samples=0).fit(frame)
    future = pd.date_range(frame["ds"].iloc[-1] + timedelta(days=1), periods=7)
    assert predict_frame(model, future) is None
    assert predict_frame(model, pd.DatetimeIndex(frame["ds"].iloc[-7:])) is None  # in-sample
