"""One series through the kernel, on real Prophet and a real Optuna journal file."""

import json
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from contracts import Forecast, load_schema, parse_forecast
from retrain.kernel.fallback import WarmState, retrain_one
from retrain.kernel.families import FAMILIES
from retrain.kernel.series import History
from retrain.kernel.tuning import TuneConfig
from retrain.prophet.fit import FitOptions, FitStats
from retrain.stores.studies import StudyRef, open_study, save_warm_state, warm_state
from tests.support.series import demand

# Three cheap families keep the tests quick; test_families covers every family.
FAST = ("prophet", "ets", "naive")
CONFIG = TuneConfig(horizon=14, folds=2, cold_trials=6, warm_trials=1, families=FAST)


def options(tmp_path: Path) -> FitOptions:
    return FitOptions(tmp_path, uncertainty_samples=50, stats=FitStats())


def test_too_little_history_falls_back_to_seasonal_naive_and_says_why(tmp_path: Path) -> None:
    history = History(date(2024, 1, 1), np.array([3.0]))
    study = open_study(StudyRef(tmp_path, 2), "one-day", cold=True)
    fit = retrain_one(history, CONFIG, options(tmp_path), study, WarmState(), lambda: None)
    assert fit.method == "seasonal_naive"
    assert fit.fallback_reason is not None
    assert "too short" in fit.fallback_reason and "no earlier model" in fit.fallback_reason
    assert len(fit.points) == 14 and fit.points[0]["date"] == "2024-01-02"


def test_tuning_failure_serves_the_last_good_model(tmp_path: Path) -> None:
    history = History(date(2023, 1, 1), demand(200))
    study = open_study(StudyRef(tmp_path, 2), "s", cold=True)
    first = retrain_one(history, CONFIG, options(tmp_path), study, WarmState(), lambda: None)
    assert first.method == "tuned" and first.validation_mase is not None

    short = History(date(2023, 1, 1), demand(20))
    fit = retrain_one(
        short, CONFIG, options(tmp_path), study, WarmState(), lambda: first.model_json
    )
    assert fit.method == "last_good" and "tuning" in (fit.fallback_reason or "")


def test_a_young_series_tunes_on_the_folds_its_history_allows(tmp_path: Path) -> None:
    config = TuneConfig(
        horizon=14, folds=4, cold_trials=3, min_train_days=56, families=("prophet", "naive")
    )
    study = open_study(StudyRef(tmp_path, 2), "young", cold=True)
    young = History(date(2023, 1, 1), demand(56 + 2 * 14))  # room for 2 folds, not 4
    fit = retrain_one(young, config, options(tmp_path), study, WarmState(), lambda: None)
    # At most 3 trials on 2 folds, then the final fit of the chosen model (a combination:
    # two). Prophet's defaults and seasonal naive come first; the sampler's third trial may
    # repeat one of them (scored once) or not. On 4 folds even two trials would take 10.
    assert fit.method == "tuned" and fit.fits <= 3 * 2 + 2


def test_warm_is_faster_than_cold_without_losing_accuracy(tmp_path: Path) -> None:
    ref = StudyRef(tmp_path, 2)
    values = demand(420, seed=0)
    earlier = History(date(2023, 1, 1), values[:-21])
    now = History(date(2023, 1, 1), values[:-14])
    test = values[-14:]
    first_study = open_study(ref, "w", cold=True, seed=0)
    first = retrain_one(earlier, CONFIG, options(tmp_path), first_study, WarmState(), lambda: None)
    save_warm_state(first_study, first.params, first.stan_init, first.choice)

    warm_study = open_study(ref, "w", cold=False, seed=0)
    state = warm_state(warm_study)
    assert state.choice is not None and state.choice == first.choice
    assert len(warm_study.trials) == first.trials == CONFIG.cold_trials  # written back
    warm = retrain_one(now, CONFIG, options(tmp_path), warm_study, state, lambda: None)
    reopened = open_study(ref, "w", cold=False)
    assert len(reopened.trials) == first.trials + warm.trials
    cold_study = open_study(ref, "w", cold=True, seed=0)
    cold = retrain_one(now, CONFIG, options(tmp_path), cold_study, WarmState(), lambda: None)

    assert warm.warm and not cold.warm
    assert warm.fits < cold.fits and warm.fit_seconds < cold.fit_seconds
    assert warm.validation_mase is not None and cold.validation_mase is not None
    assert warm.validation_mase <= cold.validation_mase * 1.05

    def test_mae(points: list[dict[str, float]]) -> float:
        return float(np.mean(np.abs(test - [p["yhat"] for p in points])))

    assert test_mae(warm.points) <= test_mae(cold.points) * 1.05


def test_a_fit_makes_a_valid_forecast_message(tmp_path: Path) -> None:
    history = History(date(2023, 1, 1), demand(150))
    study = open_study(StudyRef(tmp_path, 2), "c", cold=True)
    fit = retrain_one(history, CONFIG, options(tmp_path), study, WarmState(), lambda: None)
    forecast = Forecast(
        store_id="S1",
        item_id="I1",
        generated_at=datetime.now(UTC),
        model_version=1,
        mlflow_run_id="r",
        method=fit.method,  # type: ignore[arg-type]
        data_through=fit.data_through,
        horizon=len(fit.points),
        points=fit.points,  # type: ignore[arg-type]
        validation_mase=fit.validation_mase,
        family=fit.family,
        runner_up_family=fit.runner_up,
        runner_up_validation_mae=fit.runner_up_mae,
    )
    assert forecast.family in (*FAMILIES, "combo") and forecast.runner_up_family is not None
    message = forecast.model_dump(mode="json")
    jsonschema.validate(message, load_schema("forecast", 1))
    # A message from before the lineage fields still validates and parses.
    for name in ("family", "runner_up_family", "runner_up_validation_mae"):
        del message[name]
    jsonschema.validate(message, load_schema("forecast", 1))
    assert parse_forecast(json.dumps(message)).family is None
    assert all(p["yhat_lower"] <= p["yhat"] <= p["yhat_upper"] for p in fit.points)
    assert any(p["yhat_lower"] < p["yhat_upper"] for p in fit.points)


def test_forecast_contract_refuses_points_that_do_not_follow_the_data() -> None:
    point = {"date": "2024-01-01", "yhat": 1.0, "yhat_lower": 0.0, "yhat_upper": 2.0}
    with pytest.raises(ValueError, match="not after data_through"):
        Forecast.model_validate(
            {
                "store_id": "S",
                "item_id": "I",
                "generated_at": "2024-01-01T00:00:00+00:00",
                "model_version": 1,
                "mlflow_run_id": "r",
                "method": "tuned",
                "data_through": "2024-01-01",
                "horizon": 1,
                "points": [point],
            }
        )


def test_a_store_closed_on_sundays_is_forecast_closed_then_and_never_negative(
    tmp_path: Path,
) -> None:
    start = date(2023, 1, 2)  # a Monday
    values = demand(400, level=60.0)
    values[6::7] = 0.0  # closed every Sunday: no events, so zero days in daily_sales
    history = History(start, values)
    study = open_study(StudyRef(tmp_path, 2), "sundays", cold=True)
    fit = retrain_one(history, CONFIG, options(tmp_path), study, WarmState(), lambda: None)
    assert fit.method == "tuned"
    for point in fit.points:
        sunday = date.fromisoformat(point["date"]).weekday() == 6
        assert (point["yhat"] == 0.0) == sunday
        assert 0.0 <= point["yhat_lower"] <= point["yhat"] <= point["yhat_upper"]
    # Closed days were fitted as missing, not zeros: open days are forecast at their level.
    open_days = [p["yhat"] for p in fit.points if p["yhat"] > 0]
    assert np.mean(open_days) > 0.8 * np.mean(values[-56:][values[-56:] > 0])
