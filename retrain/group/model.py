"""One gradient-boosted model across a group of series: fit, forecast, validate.

mlforecast (pinned with LightGBM) builds the lags, rolling statistics, calendar columns and
the target transform. Every lag is at least the horizon, so a forecast never feeds on its
own predictions: one model serves all 28 days in one call (see ``_direct``), and a fold's
forecast is exactly what the service would have published at its cutoff. Measured on
Rossmann stores, recursive lags of 1-7 days were 16 % worse (closed days and compounding).

Pure: frames in, numbers out. Storage and Ray are the caller's.
"""

import pickle
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from retrain.errors import RetrainError
from retrain.group.features import STATICS, GroupSeries, history_frame, prediction_frame
from retrain.kernel.bands import NO_BAND, Band, band_of, fold_ratios

__all__ = [
    "GroupModel",
    "GroupParams",
    "Progress",
    "Validation",
    "fit_group",
    "fold_cutoffs",
    "silent",
    "validate_group",
    "week_of_year",
]

# Told what a long step is doing now ("fold 2/4: predicting 100,000 series"); a group's first
# training ran 78 min at 100,000 series with nothing to say where it was.
Progress = Callable[[str], None]


def silent(_text: str) -> None:
    """The ``Progress`` of a caller that does not listen."""


LAGS = (28, 35, 42, 49, 56, 63, 364)
# Training rows per series: two years (a year of lag-364 features plus a year to learn from).
TRAIN_DAYS = 730
# What a prediction needs of a series' past: the longest lag and the widest window behind it.
KEEP_DAYS = 400
# Series per prediction frame (its memory grows with KEEP_DAYS rows a series).
PREDICT_CHUNK = 2000
# Training rows a group model learns from at most (memory is about 1 KB a row; see
# docs/scale.md): beyond it, a stable sample of the group's series.
MAX_TRAIN_ROWS = 5_000_000
# A new item as the validation imitates it: this many days known, for this many series.
YOUNG_DAYS = 45
YOUNG_SAMPLE = 300


def week_of_year(dates: pd.DatetimeIndex) -> np.ndarray:
    """ISO week of the year (a module-level function: mlforecast names the column after it
    and the model is pickled)."""
    out: np.ndarray = dates.isocalendar().week.astype(int).to_numpy()
    return out


@dataclass(frozen=True)
class GroupParams:
    """LightGBM's few important knobs and the target transform; the defaults are the
    untuned reference (600 trees of 63 leaves at a learning rate of 0.03 on log1p)."""

    num_leaves: int = 63
    learning_rate: float = 0.03
    n_estimators: int = 600
    min_child_samples: int = 20
    feature_fraction: float = 1.0
    transform: str = "log1p"  # or "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GroupParams":
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known)


def _forecaster(params: GroupParams, seed: int, threads: int = 1) -> Any:
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, SeasonalRollingMean
    from mlforecast.target_transforms import GlobalSklearnTransformer
    from sklearn.preprocessing import FunctionTransformer

    model = lgb.LGBMRegressor(
        num_leaves=params.num_leaves,
        learning_rate=params.learning_rate,
        n_estimators=params.n_estimators,
        min_child_samples=params.min_child_samples,
        colsample_bytree=params.feature_fraction,
        random_state=seed,
        # The CPUs the Ray task holds (a series task: one); more would take other tasks'.
        n_jobs=threads,
        verbosity=-1,
    )
    transforms: list[Any] = []
    if params.transform == "log1p":
        transforms.append(GlobalSklearnTransformer(FunctionTransformer(np.log1p, np.expm1)))
    return MLForecast(
        models={"global": model},
        freq="D",
        lags=list(LAGS),
        lag_transforms={
            28: [RollingMean(7), RollingMean(28), RollingMean(91), SeasonalRollingMean(7, 4)]
        },
        date_features=["dayofweek", "day", "month", week_of_year],
        target_transforms=transforms,
        num_threads=threads,  # the lag transforms', per series
    )


@dataclass
class GroupModel:
    """A fitted group model and what its validation left for the series' selection."""

    params: GroupParams
    through: date  # the last day it learned from
    horizon: int
    use_plans: bool
    forecaster: Any
    categories: dict[str, list[str]]
    # Rolling-origin validation: the cutoffs (last training day of each fold) and each
    # series' fold forecasts, shape (folds, horizon); the selection scores ``global`` on them.
    cutoffs: list[date] = field(default_factory=list)
    folds: dict[str, np.ndarray] = field(default_factory=dict)
    score: float | None = None  # pooled MAE over the folds' open days
    # Pooled 10th/90th percentiles of actual / forecast on the folds: what every series'
    # band is shrunk toward (retrain.kernel.bands).
    ratio_band: tuple[float, float] = (1.0, 1.0)
    # The same for a series forecast from its first few weeks (a new item): wider.
    young_band: tuple[float, float] = (1.0, 1.0)
    fit_seconds: float = 0.0
    rows: int = 0
    tuning_score: float | None = None  # the chosen params' pooled MAE on the tuning folds

    def predict(self, series: Sequence[GroupSeries], through: date) -> dict[str, np.ndarray]:
        """Each series' forecast of the ``horizon`` days after ``through``, from its own
        recent days (new items included): never negative, zero on closed days."""
        return _predict(self, series, through, self.horizon)

    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(blob: bytes) -> "GroupModel":
        try:
            found = pickle.loads(blob)  # noqa: S301 - our own artifact, written by fit_group
        except Exception as exc:  # a truncated or foreign file fails in many ways
            raise RetrainError(
                f"The group model file is unreadable ({type(exc).__name__}: {exc}); the group "
                "is retrained, its series use their own families meanwhile."
            ) from exc
        if not isinstance(found, GroupModel):
            raise RetrainError("The file is not a Shelfcast group model; retrain the group.")
        return found


def _fit(
    series: Sequence[GroupSeries],
    through: date,
    params: GroupParams,
    use_plans: bool,
    seed: int = 0,
    threads: int = 1,
) -> tuple[Any, dict[str, list[str]], int]:
    frame = history_frame(series, through, TRAIN_DAYS, use_plans)
    categories = {name: list(frame[name].cat.categories) for name in STATICS}
    forecaster = _forecaster(params, seed, threads)
    with warnings.catch_warnings():
        # Missing lags are expected (a series younger than a year): LightGBM takes them.
        warnings.filterwarnings("ignore", message="Found null values", category=UserWarning)
        forecaster.fit(
            frame,
            static_features=list(STATICS),
            weight_col="w",
            dropna=False,
            keep_last_n=KEEP_DAYS,
            validate_data=False,
        )
    return forecaster, categories, len(frame)


def _predict(
    model: GroupModel,
    series: Sequence[GroupSeries],
    through: date,
    horizon: int,
    threads: int = 1,
) -> dict[str, np.ndarray]:
    known = [s for s in series if (through - s.start).days >= 0]
    out: dict[str, np.ndarray] = {}
    # In chunks: a prediction frame holds KEEP_DAYS rows per series.
    for first in range(0, len(known), PREDICT_CHUNK):
        chunk = known[first : first + PREDICT_CHUNK]
        frame, shut = prediction_frame(
            chunk, through, KEEP_DAYS, horizon, model.use_plans, model.categories
        )
        found = _direct(model, frame, through, threads)
        for key, rows in found.groupby("unique_id", sort=False):
            values = np.maximum(rows["global"].to_numpy(float), 0.0)
            out[str(key)] = np.where(shut[str(key)], 0.0, values)
    return out


def _direct(
    model: GroupModel, frame: pd.DataFrame, through: date, threads: int = 1
) -> pd.DataFrame:
    """The model's forecast of the rows of ``frame`` after ``through``, in one call.

    Every lag is at least the horizon, so each day ahead has its features from the history
    alone: mlforecast computes them (``preprocess``, on a forecaster of the same
    configuration: the fitted one keeps its training state) and LightGBM predicts every
    series and day at once. mlforecast's own ``predict`` is recursive: it updates the
    features and calls the model once per day ahead, 28 rounds of pandas work that were
    most of a one-series forecast (110 ms, against ~2.8 ms a series in a batch of 200).
    """
    fitted = model.forecaster
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found null values", category=UserWarning)
        features = _forecaster(model.params, 0, threads).preprocess(
            frame,
            static_features=list(STATICS),
            dropna=False,
            weight_col="w",
            validate_data=False,
        )
    ahead = features[features["ds"] > pd.Timestamp(through)]
    found = ahead[["unique_id", "ds"]].reset_index(drop=True)
    # Threads as the caller holds CPUs, not as the model was fitted (a group retrain's CPUs).
    found["global"] = fitted.models_["global"].predict(
        ahead[fitted.ts.features_order_], num_threads=threads
    )
    # The target transform's inverse, as mlforecast's predict applies it (log1p's is global).
    for transform in (fitted.ts.target_transforms or [])[::-1]:
        found = transform.inverse_transform(found)
    return found


def training_sample(series: Sequence[GroupSeries], max_rows: int) -> list[GroupSeries]:
    """The series a group model learns from: all of them while their rows fit in
    ``max_rows``, else a stable sample (by a hash of the key, the same at every fold and
    every retrain) that does. Every series is still forecast and validated."""
    rows = sum(min(len(s.values), TRAIN_DAYS) for s in series)
    if rows <= max_rows:
        return list(series)
    return stable_sample(series, int(len(series) * max_rows / rows))


def stable_sample(series: Sequence[GroupSeries], count: int) -> list[GroupSeries]:
    """About ``count`` of ``series``, chosen by a hash of their keys: the same ones at every
    fold and every retrain."""
    if count >= len(series):
        return list(series)
    share = count / len(series)
    kept = [s for s in series if zlib.crc32(s.key.encode()) / 2**32 < share]
    return kept or list(series[:1])


def fold_cutoffs(through: date, horizon: int, folds: int) -> list[date]:
    """The last training day of each rolling-origin fold, oldest first."""
    return [through - timedelta(days=horizon * k) for k in range(folds, 0, -1)]


@dataclass
class Validation:
    """A group's rolling-origin validation: every series' fold forecasts, the cutoffs, the
    pooled MAE on open days, and the band of a new item's forecasts (see ``young``)."""

    folds: dict[str, np.ndarray]
    cutoffs: list[date]
    score: float
    young_band: tuple[float, float] = (1.0, 1.0)


def _young(one: GroupSeries, cutoff: date) -> GroupSeries | None:
    """``one`` as a new item at ``cutoff``: only its last :data:`YOUNG_DAYS` days known."""
    first = (cutoff - one.start).days + 1 - YOUNG_DAYS
    if first <= 0:
        return None
    return replace(
        one,
        start=one.start + timedelta(days=first),
        values=one.values[first:],
        closed=one.closed[first:],
        plan=one.plan.window(first, len(one.plan) - first),
    )


def validate_group(
    series: Sequence[GroupSeries],
    through: date,
    params: GroupParams,
    use_plans: bool,
    horizon: int,
    folds: int,
    seed: int = 0,
    max_rows: int = MAX_TRAIN_ROWS,
    young: bool = False,
    threads: int = 1,
    progress: Progress = silent,
) -> Validation:
    """Rolling-origin folds over the group: each fold fitted on its past only. With
    ``young``, a sample of series is also forecast at each cutoff from its last few weeks
    alone, as a new item would be: their errors are wider, and so is a new item's band."""
    cutoffs = fold_cutoffs(through, horizon, folds)
    out: dict[str, list[np.ndarray]] = {}
    error = counted = 0.0
    learners = training_sample(series, max_rows)
    ratios: list[np.ndarray] = []
    for n, cutoff in enumerate(cutoffs, 1):
        progress(f"fold {n}/{len(cutoffs)}: fitting")
        forecaster, categories, _ = _fit(learners, cutoff, params, use_plans, seed, threads)
        model = GroupModel(params, cutoff, horizon, use_plans, forecaster, categories)
        progress(f"fold {n}/{len(cutoffs)}: predicting {len(series):,} series")
        found = _predict(model, series, cutoff, horizon, threads)
        if young:
            sample = [
                y for s in training_sample(series, YOUNG_SAMPLE * 365) if (y := _young(s, cutoff))
            ]
            guessed = _predict(model, sample, cutoff, horizon, threads)
            for one in sample:
                if one.key in guessed:
                    ratios.append(_ratios(one, cutoff, guessed[one.key], horizon))
        for one in series:
            first = (cutoff - one.start).days + 1
            if one.key not in found or first < 0:
                continue
            actual = one.values[first : first + horizon]
            shut = one.shut()[first : first + horizon]
            out.setdefault(one.key, []).append(found[one.key])
            days = ~shut & (actual > 0)
            error += float(np.abs(found[one.key] - actual)[days].sum())
            counted += float(days.sum())
    complete = {k: np.vstack(v) for k, v in out.items() if len(v) == len(cutoffs)}
    score = error / counted if counted else float("inf")
    return Validation(complete, cutoffs, score, _band(ratios))


def _ratios(one: GroupSeries, cutoff: date, forecast: np.ndarray, horizon: int) -> np.ndarray:
    """actual / forecast on the days both sold (an interval scales with the forecast)."""
    first = (cutoff - one.start).days + 1
    actual = one.values[first : first + horizon]
    return fold_ratios([actual], [forecast], [actual > 0])


def _band(ratios: list[np.ndarray]) -> Band:
    """The pooled ratios' 80 % band around a forecast."""
    return band_of(np.concatenate(ratios)) if ratios else NO_BAND


def _ratio_band(series: Sequence[GroupSeries], model: GroupModel) -> Band:
    ratios = []
    for one in series:
        folds = model.folds.get(one.key)
        if folds is None:
            continue
        for cutoff, forecast in zip(model.cutoffs, folds, strict=True):
            ratios.append(_ratios(one, cutoff, forecast, model.horizon))
    return _band(ratios)


def fit_group(
    series: Sequence[GroupSeries],
    through: date,
    params: GroupParams,
    use_plans: bool = True,
    horizon: int = 28,
    folds: int = 4,
    seed: int = 0,
    max_rows: int = MAX_TRAIN_ROWS,
    threads: int = 1,
    progress: Progress = silent,
) -> GroupModel:
    """Validate on ``folds`` rolling origins, then fit on everything through ``through``
    (on a stable sample of the series when their rows exceed ``max_rows``)."""
    if not series:
        raise RetrainError("A group model needs at least one series.")
    began = time.process_time()
    checked = (
        validate_group(
            series,
            through,
            params,
            use_plans,
            horizon,
            folds,
            seed,
            max_rows,
            True,
            threads,
            lambda text: progress(f"validation {text}"),
        )
        if folds
        else Validation({}, [], float("nan"))
    )
    progress("fitting on every day")
    learners = training_sample(series, max_rows)
    forecaster, categories, rows = _fit(learners, through, params, use_plans, seed, threads)
    model = GroupModel(
        params,
        through,
        horizon,
        use_plans,
        forecaster,
        categories,
        checked.cutoffs,
        checked.folds,
        checked.score if folds else None,
    )
    model.ratio_band = _ratio_band(series, model)
    model.young_band = checked.young_band
    model.fit_seconds = time.process_time() - began
    model.rows = rows
    return model
