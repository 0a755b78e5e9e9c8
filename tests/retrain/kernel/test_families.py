"""Each family fits, forecasts and falls back on its own."""

from datetime import date
from pathlib import Path

import numpy as np
import optuna
import pytest

from retrain.errors import RetrainError
from retrain.kernel.fallback import WarmState, retrain_one
from retrain.kernel.families import (
    FAMILIES,
    GLOBAL,
    Candidate,
    SeriesData,
    forecast,
    select_structure,
)
from retrain.kernel.series import History
from retrain.kernel.tuning import TuneConfig
from retrain.prophet.fit import FitOptions, FitStats
from tests.support.series import demand

START = date(2023, 1, 2)


def options(tmp_path: Path) -> FitOptions:
    return FitOptions(tmp_path, "inprocess", 0, FitStats())


# ``global`` is the group model: it is not fitted per series (tests/retrain/test_group.py).
@pytest.mark.parametrize("family", [f for f in FAMILIES if f != GLOBAL])
def test_each_family_selects_its_structure_and_forecasts(family: str, tmp_path: Path) -> None:
    values = demand(450)
    if family in ("croston", "adida", "imapa"):
        values = np.random.default_rng(1).poisson(0.5, 450).astype(float)
    cutoff, pool = 420, None
    if family == "topdown":  # a year and a quarter, and the store the series belongs to
        values = demand(600)
        cutoff, pool = 560, values + sum(demand(600, seed=k) for k in range(1, 5))
    data = SeriesData(START, values, values, pool=pool)
    candidate = select_structure(family, values[-364:])
    assert candidate.family == family
    if family in ("arima", "ets", "theta"):
        assert candidate.params  # the structure a warm wave keeps
    yhat = forecast(candidate, data, cutoff, 28, options(tmp_path))
    assert yhat.shape == (28,) and np.all(np.isfinite(yhat))
    mae = float(np.mean(np.abs(yhat - values[cutoff : cutoff + 28])))
    assert mae < 3 * max(float(np.mean(values)), 1.0)


def test_a_kept_structure_is_re_estimated_not_searched_again(tmp_path: Path) -> None:
    values = demand(450)
    arima = Candidate(
        "arima", {"order": [1, 0, 0], "seasonal_order": [0, 1, 1], "include_mean": False}
    )
    yhat = forecast(arima, SeriesData(START, values, values), 450, 28, options(tmp_path))
    assert np.all(np.isfinite(yhat))


def test_topdown_splits_the_store_by_the_series_share(tmp_path: Path) -> None:
    # A store whose items all follow one shape: each item's forecast is its share of the
    # store's year-ago days scaled by the growth since, whatever the params.
    days = np.arange(600)
    shape = (1 + 0.3 * np.sin(2 * np.pi * days / 7)) * (1 + 0.2 * np.sin(2 * np.pi * days / 364))
    store = 100.0 * shape * (1 + days / 1000)
    item = 0.25 * store
    data = SeriesData(START, item, item, pool=store)
    for weekday_share in (False, True):
        params = {"growth_days": 28, "share_days": 91, "weekday_share": weekday_share}
        yhat = forecast(Candidate("topdown", params), data, 560, 28, options(tmp_path))
        np.testing.assert_allclose(yhat, item[560:588], rtol=0.05)
    with pytest.raises(RetrainError, match="store's daily total"):
        forecast(Candidate("topdown"), SeriesData(START, item, item), 560, 28, options(tmp_path))
    with pytest.raises(RetrainError, match="days before a forecast"):
        forecast(Candidate("topdown"), data, 300, 28, options(tmp_path))


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


def test_topdown_is_searched_only_with_the_store_total_and_enough_history(tmp_path: Path) -> None:
    config = TuneConfig(horizon=14, folds=2, cold_trials=4, families=("naive", "topdown"))
    values = demand(600)
    pool = values + sum(demand(600, seed=k) for k in range(1, 5))
    cases = [
        (History(START, values, pool), True),
        (History(START, values), False),  # no store total in the read
        (History(START, values[-400:], pool[-400:]), False),  # 372 days before the oldest fold
    ]
    for history, searched in cases:
        study = optuna.create_study()
        fit = retrain_one(history, config, options(tmp_path), study, WarmState(), lambda: None)
        assert fit.method == "tuned"
        complete = optuna.trial.TrialState.COMPLETE
        families = {t.params["family"] for t in study.get_trials(states=(complete,))}
        assert ("topdown" in families) == searched, families
