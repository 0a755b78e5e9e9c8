"""The group model, pure: features, fit and forecast across series, folds, tuning, plans."""

import warnings
from datetime import date, timedelta

import numpy as np
import optuna
import pytest

from retrain.errors import RetrainError
from retrain.group.features import (
    GroupSeries,
    future_frame,
    group_view,
    history_frame,
    lag_source,
    series_input,
)
from retrain.group.model import KEEP_DAYS, GroupModel, GroupParams, fit_group
from retrain.group.tuning import GroupTuneConfig, tune_group
from retrain.kernel.calendar import CalendarConfig
from retrain.kernel.plans import Plan, StoreInfo, day_plan, distance_features

START = date(2023, 1, 2)  # a Monday
QUICK = GroupParams(n_estimators=60, num_leaves=15, learning_rate=0.1)


def _store_series(
    store: str, days: int, level: float, seed: int, promos: list[Plan]
) -> tuple[np.ndarray, list[Plan]]:
    """A store closed on Sundays whose promotions lift sales by half."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    weekday = (t + START.weekday()) % 7
    y = level * (1 + 0.2 * np.sin(2 * np.pi * t / 7)) * (1 + 0.1 * np.sin(2 * np.pi * t / 365))
    plan = day_plan(START, days, promos, None, CalendarConfig())
    y = y * (1 + 0.5 * plan.promo)
    y = rng.poisson(y).astype(float)
    y[weekday == 6] = 0.0
    return y, promos


def _promos(days: int, offset: int) -> list[Plan]:
    """A week of promotion every four weeks."""
    return [
        Plan("promotion", START + timedelta(days=k), START + timedelta(days=k + 6))
        for k in range(offset, days + 60, 28)
    ]


def _group(days: int = 540, stores: int = 4) -> list[GroupSeries]:
    out = []
    for s in range(stores):
        promos = _promos(days, 3 + 7 * s)
        values, plans = _store_series(f"S{s}", days, 50.0 + 20 * s, s, promos)
        info = StoreInfo(f"S{s}", "DE", "NW", (1, 2, 3, 4, 5, 6), "a", "b")
        out.append(
            series_input(
                f"S{s}|all", f"S{s}", "all", START, values, plans, info, CalendarConfig(), 28
            )
        )
    return out


def test_plan_arrays_mark_promotions_closures_and_regular_weekdays() -> None:
    plans = [
        Plan("promotion", date(2024, 3, 4), date(2024, 3, 6), depth=0.2),
        Plan("closure", date(2024, 3, 7), date(2024, 3, 7)),
        Plan("school_holiday", date(2024, 3, 1), date(2024, 3, 20)),
        Plan("price", date(2024, 3, 5), date(2024, 3, 5), unit_price=2.5),
    ]
    store = StoreInfo("S", "DE", "BY", (1, 2, 3, 4, 5, 6))
    plan = day_plan(date(2024, 3, 1), 14, plans, store, CalendarConfig())
    assert plan.promo.tolist()[:7] == [0, 0, 0, 1, 1, 1, 0]
    assert plan.promo_depth[3] == pytest.approx(0.2)
    # 2024-03-03 and 03-10 are Sundays (not a weekday it opens); 03-07 is planned shut.
    assert np.flatnonzero(plan.closed).tolist() == [2, 6, 9]
    assert plan.school_holiday.sum() == 14
    assert plan.price[4] == 2.5 and np.isnan(plan.price[3])
    near = distance_features(plan.promo, "promo", cap=5)
    assert near["promo_to"].tolist()[:4] == [3, 2, 1, 0]
    assert near["promo_since"].tolist()[6:9] == [1, 2, 3]


def test_a_store_in_another_region_gets_its_own_holidays() -> None:
    bavaria = StoreInfo("S", "DE", "BY")
    plan = day_plan(date(2024, 1, 1), 10, [], bavaria, CalendarConfig(country="FR"))
    # Epiphany (6 January) is a public holiday in Bavaria, not in France or Berlin.
    assert plan.holiday[5] == 1.0 and plan.holiday[0] == 1.0
    berlin = day_plan(date(2024, 1, 1), 10, [], StoreInfo("S", "DE", "BE"), CalendarConfig())
    assert berlin.holiday[5] == 0.0


def test_closed_days_stay_in_the_frame_with_weight_zero() -> None:
    series = _group(days=120, stores=1)
    frame = history_frame(series, START + timedelta(days=119), 120, use_plans=True)
    sundays = frame["ds"].dt.dayofweek == 6
    assert (frame.loc[sundays, "w"] == 0).all() and (frame.loc[~sundays, "w"] == 1).all()
    assert {"promo", "promo_to", "closed_tomorrow", "holiday_since"} <= set(frame.columns)


def test_a_closed_day_reads_as_its_weekday_in_the_weeks_before_the_closure() -> None:
    days = 7 * 20
    weekday = np.arange(days) % 7
    values = np.where(weekday == 6, 0.0, 10.0 + weekday)  # shut every seventh day
    values[100] = 0.0  # one day shut (a holiday)
    values[110:130] = 0.0  # shut for three weeks
    closed = (weekday == 6) | (values == 0)
    read = lag_source(values, closed)
    assert (read[weekday == 6] == 0).all()  # a weekly rest day: never open, stays zero
    assert read[100] == 10.0 + weekday[100]
    # Deep in the long closure: the same weekday before it began, not zeros.
    expected = np.where(weekday[110:130] == 6, 0.0, 10.0 + weekday[110:130])
    np.testing.assert_array_equal(read[110:130], expected)
    assert np.array_equal(read[~closed], values[~closed])


def test_a_store_that_reopens_after_months_shut_is_forecast_at_its_old_level() -> None:
    days = 540
    series = _group(days=days, stores=4)
    through = START + timedelta(days=days - 1)
    # Store S0 was shut for the 120 days before the origin and reopens the day after it.
    old = series[0]
    closure = Plan("closure", through - timedelta(days=119), through)
    values = old.values.copy()
    values[-120:] = 0.0
    shut = series_input(
        old.key,
        old.store_id,
        old.item_id,
        START,
        values,
        [*_promos(days, 3), closure],
        StoreInfo("S0", "DE", "NW", (1, 2, 3, 4, 5, 6), "a", "b"),
        CalendarConfig(),
        28,
    )
    model = fit_group([shut, *series[1:]], through, QUICK, folds=0)
    forecast = model.predict([shut], through)[shut.key]
    before = old.values[-240:-120]
    level = before[before > 0].mean()
    assert 0.6 * level < forecast[forecast > 0].mean() < 1.5 * level


def test_the_group_model_learns_promotions_across_stores_and_forecasts_a_new_one() -> None:
    series = _group()
    through = START + timedelta(days=539)
    model = fit_group(series, through, QUICK, use_plans=True, folds=2)
    found = model.predict(series, through)
    assert set(found) == {s.key for s in series}
    for one in series:
        forecast = found[one.key]
        assert forecast.shape == (28,) and (forecast >= 0).all()
        shut = one.shut()[540:568]
        assert (forecast[shut] == 0).all()
        promo = one.plan.promo[540:568] > 0
        # Promotion days are forecast well above the same store's other open days.
        assert forecast[promo & ~shut].mean() > 1.25 * forecast[~promo & ~shut].mean()
    # Every series has its fold forecasts; the band brackets 1.
    assert model.cutoffs == [through - timedelta(days=56), through - timedelta(days=28)]
    assert all(model.folds[s.key].shape == (2, 28) for s in series)
    low, high = model.ratio_band
    assert low < 1.0 < high
    # A new store (30 days) gets a forecast from its first days, at its own level.
    promos = _promos(540, 5)
    values, _ = _store_series("N", 540, 200.0, 9, promos)
    new = series_input(
        "N|all",
        "N",
        "all",
        through - timedelta(days=29),
        values[-30:],
        promos,
        StoreInfo("N", "DE", "NW", (1, 2, 3, 4, 5, 6)),
        CalendarConfig(),
        28,
    )
    forecast = model.predict([new], through)["N|all"]
    assert forecast.max() > 0
    level = values[-30:][values[-30:] > 0].mean()
    assert 0.5 * level < forecast[forecast > 0].mean() < 2 * level


def test_a_model_round_trips_through_bytes_and_rejects_other_files() -> None:
    series = _group(days=200, stores=2)
    through = START + timedelta(days=199)
    model = fit_group(series, through, QUICK, folds=0)
    again = GroupModel.from_bytes(model.to_bytes())
    a, b = model.predict(series, through), again.predict(series, through)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    import pickle

    with pytest.raises(RetrainError, match="not a Shelfcast group model"):
        GroupModel.from_bytes(pickle.dumps({"not": "a model"}))


def test_the_view_maps_fold_cutoffs_to_the_series_history() -> None:
    series = _group(days=300, stores=2)
    through = START + timedelta(days=299)
    model = fit_group(series, through, QUICK, folds=2)
    one = series[0]
    history_start = START + timedelta(days=10)
    view = group_view(
        model.predict([one], through)[one.key],
        model.cutoffs,
        model.folds[one.key],
        "v1",
        model.ratio_band,
        history_start,
    )
    # Fold k starts the day after its cutoff, as an index into a history from day 10.
    assert view.cutoffs == (300 - 56 - 10, 300 - 28 - 10)
    assert np.array_equal(view.fold(view.cutoffs[1]), model.folds[one.key][1])


def test_the_group_study_starts_from_the_reference_and_warm_starts() -> None:
    series = _group(days=400, stores=3)
    through = START + timedelta(days=399)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
    config = GroupTuneConfig(cold_trials=2, warm_trials=1, folds=2, tune_folds=1)
    said: list[str] = []
    cold = tune_group(series, through, study, config, said.append)
    # Each step is told: both trials' fold, then the chosen one's validation and its fit.
    assert said == [
        "trial 1/2, fold 1/1: fitting",
        "trial 1/2, fold 1/1: predicting 3 series",
        "trial 2/2, fold 1/1: fitting",
        "trial 2/2, fold 1/1: predicting 3 series",
        "the best of 2 trials, validation fold 1/2: fitting",
        "the best of 2 trials, validation fold 1/2: predicting 3 series",
        "the best of 2 trials, validation fold 2/2: fitting",
        "the best of 2 trials, validation fold 2/2: predicting 3 series",
        "the best of 2 trials, fitting on every day",
    ]
    first = study.trials[0].params
    assert first["num_leaves"] == GroupParams().num_leaves  # the reference is tried first
    assert cold.tuning_score is not None and len(study.trials) == 2
    later = through + timedelta(days=7)
    grown = _group(days=407, stores=3)
    warm = tune_group(grown, later, study, config)
    # Warm: the best so far re-scored on today's folds, plus one new trial.
    assert len(study.trials) == 4
    best_before = min(study.trials[:2], key=lambda t: t.value).params
    assert study.trials[2].params == best_before
    assert warm.folds and warm.through == later


@pytest.mark.parametrize("transform", ["none", "log1p"])
def test_the_one_call_forecast_is_mlforecasts_recursive_one(transform: str) -> None:
    """Every lag is at least the horizon: one LightGBM call forecasts what mlforecast's
    day-by-day loop does."""
    series = _group()
    through = START + timedelta(days=480)
    params = GroupParams(**{**QUICK.as_dict(), "transform": transform})
    model = fit_group(series, through, params, folds=0)
    recent = history_frame(series, through, KEEP_DAYS, True, model.categories)
    ahead, shut = future_frame(series, through, 28, True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found null values", category=UserWarning)
        theirs = model.forecaster.predict(28, new_df=recent, X_df=ahead)
    ours = model.predict(series, through)
    for key, rows in theirs.groupby("unique_id"):
        expected = np.where(shut[str(key)], 0.0, np.maximum(rows["global"].to_numpy(), 0.0))
        # The same features from the same code; log1p's round trip may move the last bits
        # (on a larger synthetic chain, 0.3 % of days crossed a split threshold by it).
        np.testing.assert_allclose(ours[str(key)], expected, rtol=1e-6)


def test_a_group_retrain_uses_the_threads_of_its_cpus_and_a_series_task_one() -> None:
    series = _group(days=300, stores=2)
    through = START + timedelta(days=299)
    model = fit_group(series, through, QUICK, folds=2, threads=2)
    assert model.forecaster.models_["global"].n_jobs == 2
    assert model.forecaster.ts.num_threads == 2
    # A cached model forecasts with one thread in a series task, whatever it was fitted with.
    one = GroupModel.from_bytes(model.to_bytes())
    one.forecaster.models_["global"].set_params(n_jobs=1)
    a, b = model.predict(series, through), one.predict(series, through)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    config = GroupTuneConfig(cold_trials=1, folds=2, threads=2)
    study = optuna.create_study(direction="minimize")
    assert tune_group(series, through, study, config).forecaster.models_["global"].n_jobs == 2
