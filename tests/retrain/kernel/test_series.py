from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from retrain.errors import RetrainError
from retrain.kernel.series import history_from_daily, mase, rolling_folds, seasonal_naive


def test_history_fills_missing_days_with_zero() -> None:
    rows = pa.table({"day": [date(2024, 1, 1), date(2024, 1, 4)], "units": [3.0, 5.0]})
    history = history_from_daily(rows)
    assert history.values.tolist() == [3.0, 0.0, 0.0, 5.0]
    assert history.end == date(2024, 1, 4)
    assert history_from_daily(rows, through=date(2024, 1, 6)).values.tolist()[-2:] == [0.0, 0.0]


def test_empty_history_is_an_error_that_says_why() -> None:
    with pytest.raises(RetrainError, match="no daily sales"):
        history_from_daily(pa.table({"day": pa.array([], pa.date32()), "units": []}))


def test_rolling_folds_are_the_last_windows_oldest_first() -> None:
    folds = rolling_folds(length=100, horizon=28, folds=2, min_train=30)
    assert [(f.cutoff, f.horizon) for f in folds] == [(44, 28), (72, 28)]
    assert len(rolling_folds(length=70, horizon=28, folds=3, min_train=30)) == 1


def test_seasonal_naive_repeats_the_last_week() -> None:
    history = np.arange(14.0)
    assert seasonal_naive(history, 9).tolist() == [7, 8, 9, 10, 11, 12, 13, 7, 8]


def test_mase_is_one_for_seasonal_naive_on_a_steady_trend() -> None:
    train = np.arange(28.0)
    actual = np.arange(28.0, 35.0)
    assert mase(actual, seasonal_naive(train, 7), train) == pytest.approx(1.0)
    assert mase([1.0], [1.0], [2.0, 2.0]) == 0.0
