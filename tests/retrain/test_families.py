"""Each family fits, forecasts and falls back on its own."""

from datetime import date
from pathlib import Path

import numpy as np
import optuna
import pytest

from retrain.errors import RetrainError
from retrain.families import FAMILIES, Candidate, SeriesData, forecast, select_structure
from retrain.kernel import WarmState, retrain_one
from retrain.prophet_fit import FitOptions, FitStats
from retrain.series import History
from retrain.tuning import TuneConfig
from tests.conftest import demand

START = date(2023, 1, 2)


def options(tmp_path: Path) -> FitOptions:
    return FitOptions(tmp_path, "inprocess", 0, FitStats())


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_selects_its_structure_and_forecasts(family: str, tmp_path: Path) -> None:
    values = demand(450)
    if family in ("croston", "adida", "imapa"):
        values = np.random.default_rng(1).poisson(0.5, 450).astype(float)
    data = SeriesData(START, values, values)
    candidate = select_structure(family, values[-364:])
    assert candidate.family == family
    if family in ("arima", "ets", "theta"):
        assert candidate.params  # the structure a warm wave keeps
    yhat = forecast(candidate, data, 420, 28, options(tmp_path))
    assert yhat.shape == (28,) and np.all(np.isfinite(yhat))
    mae = float(np.mean(np.abs(yhat - values[420:448])))
    assert mae < 3 * max(float(np.mean(values)), 1.0)


def test_a_kept_structure_is_re_estimated_not_searched_again(tmp_path: Path) -> None:
    values = demand(450)
    arima = Candidate(
        "arima", {"order": [1, 0, 0], "seasonal_order": [0, 1, 1], "include_mean": False}
    )
    yhat = forecast(arima, SeriesData(START, values, values), 450, 28, options(tmp_path))
    assert np.all(np.isfinite(yhat))


def test_a_family_that_cannot_fit_raises_our_error(tmp_path: Path) -> None:
    values = demand(10)
    with pytest.raises(RetrainError, match="too few"):
        forecast(Candidate("naive"), SeriesData(START, values, values), 10, 7, options(tmp_path))
    with pytest.raises(RetrainError, match="Unknown model family"):
        forecast(
            Candidate("nope"), SeriesData(START, demand(60), demand(60)), 60, 7, options(tmp_path)
        )


def test_a_failing_family_never_fails_the_series(tmp_path: Path) -> None:
    # An ARIMA structure statsforecast refuses: its trials fail, the others carry on.
    config = TuneConfig(horizon=14, folds=2, cold_trials=4, families=("prophet", "arima", "naive"))
    history = History(START, demand(300))
    study = optuna.create_study()
    broken = {"family": "arima", "params": {"order": [0, 0, 0], "seasonal_order": [9, 9, 9]}}
    choice = {
        "champion": broken,
        "structures": {"arima": broken},
        "score": 1.0,
        "waves": 0,
    }
    fit = retrain_one(
        history, config, options(tmp_path), study, WarmState(choice=choice), lambda: None
    )
    assert fit.method == "tuned" and fit.family != "arima"
    assert all(p["yhat"] >= 0 for p in fit.points)
