"""80 % bands in ratios of the forecast, a series' own pooled with its group's."""

import numpy as np
import pytest

from retrain.kernel.bands import NO_BAND, POOLED_DAYS, apply_band, band_of, fold_ratios, pooled_band
from retrain.kernel.families import Candidate
from retrain.kernel.tuning import Choice


def test_fold_ratios_skip_uncounted_days_and_forecasts_of_zero() -> None:
    actuals = [np.array([10.0, 20.0, 0.0, 5.0])]
    forecasts = [np.array([5.0, -1.0, 4.0, 5.0])]
    counted = [np.array([True, True, True, False])]
    # Day 2's forecast is clipped to zero (no ratio); day 3 sold nothing (a ratio of 0);
    # day 4 is not counted (a closed day).
    assert fold_ratios(actuals, forecasts, counted).tolist() == [2.0, 0.0]


def test_a_band_is_the_ratios_10th_and_90th_percentiles_widened_when_they_are_few() -> None:
    few = np.linspace(0.5, 1.5, 41)
    low, high = band_of(few)
    assert low < np.quantile(few, 0.1) and high > np.quantile(few, 0.9)
    assert band_of(np.linspace(0.5, 1.5, 100_001)) == pytest.approx((0.6, 1.4), abs=1e-3)
    assert band_of(few[:9]) == NO_BAND


def test_a_series_band_leans_on_the_group_until_it_has_many_days_of_its_own() -> None:
    pooled = (0.8, 1.2)
    few = np.linspace(0.5, 1.5, 11)  # 11 ratios: mostly the group's band
    many = np.tile(np.linspace(0.5, 1.5, 101), 50)  # 5,050: mostly its own
    low, high = pooled_band(few, pooled)
    assert 0.75 < low < 0.8 and 1.2 < high < 1.25
    low, high = pooled_band(many, pooled)
    assert low == pytest.approx(0.6, abs=0.015) and high == pytest.approx(1.4, abs=0.015)
    # As many of its own days as the pool weighs: half way.
    even = np.tile(np.linspace(0.5, 1.5, 101), 1)[:POOLED_DAYS]
    assert pooled_band(even, pooled)[1] == pytest.approx((band_of(even)[1] + 1.2) / 2)


def test_without_a_group_a_series_has_its_own_band_and_with_too_few_days_the_group_s() -> None:
    ratios = np.linspace(0.5, 1.5, 101)
    assert pooled_band(ratios, None) == band_of(ratios)
    assert pooled_band(ratios[:5], (0.8, 1.2)) == (0.8, 1.2)
    assert pooled_band(ratios[:5], None) == NO_BAND


def test_a_band_widens_with_the_forecast_and_a_negative_forecast_is_a_zero_level() -> None:
    low, high = apply_band(np.array([100.0, 200.0, -3.0]), (0.8, 1.25))
    assert low.tolist() == [80.0, 160.0, 0.0]
    assert high.tolist() == [125.0, 250.0, 0.0]


def test_a_choice_saved_with_an_additive_interval_has_no_band_so_its_next_wave_re_scores() -> None:
    saved = Choice(Candidate("ets"), {}, 1.0, band=(0.9, 1.1)).as_dict()
    assert Choice.from_dict(saved).band == (0.9, 1.1)
    del saved["band"]
    saved["interval"] = [-3.0, 4.0]  # an additive band, as saved before
    assert Choice.from_dict(saved).band is None
