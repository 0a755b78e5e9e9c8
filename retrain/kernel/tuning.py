"""Per-series model choice on rolling-origin folds: one Optuna study over model families.

The study searches ``family`` as a categorical with conditional params (Prophet's priors;
the automatic families' structure is selected once by their statsforecast Auto model, on
the last ``select_days``, and then only re-estimated). Every candidate is scored on the same
folds, by its mean absolute error on the days the series was open; each candidate's fold
forecasts are computed once. A combination, the mean of the best ``combine_top`` families,
is a candidate too (the better of the best two and three), and the default: a single model
replaces it only when it wins beyond the folds' noise (:mod:`retrain.kernel.selection`), because
combining pays more than selecting.

Cold: every family once, then TPE trials; structure is selected. Warm: the champion is
re-estimated with its structure kept and re-scored on today's folds, a few TPE trials
challenge it, and the same rule decides. Full re-selection every ``reselect_every`` warm
waves, or when the champion's fold error drifted ``drift_ratio`` above its score when chosen.

The wave's trials run on an in-memory copy of the study's most recent trials and are added
back to the study at the end (the study table then saves them with the warm state in one
transaction; on a persisted Optuna study each suggestion would be its own write).
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from retrain.errors import RetrainError
from retrain.kernel.bands import Band, fold_ratios, pooled_band
from retrain.kernel.calendar import CalendarConfig, Closures
from retrain.kernel.families import (
    AUTO_FAMILIES,
    FAMILIES,
    GLOBAL,
    INTERMITTENT,
    TOPDOWN_CHOICES,
    TOPDOWN_DEFAULT,
    TOPDOWN_MIN_DAYS,
    Candidate,
    GroupView,
    SeriesData,
    forecast,
    select_structure,
)
from retrain.kernel.selection import SelectionRule, pick
from retrain.kernel.series import YEAR, Fold, History, mase_scale, rolling_folds
from retrain.prophet.fit import DEFAULT_PARAMS, FitOptions, Params
from retrain.prophet.folds import FoldScorer

__all__ = [
    "Choice",
    "TuneConfig",
    "Tuned",
    "combo",
    "series_folds",
    "suggest",
    "tune",
]

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class TuneConfig:
    """The tuning knobs (from settings)."""

    horizon: int = 28
    folds: int = 4  # at most; a younger series uses what its history allows
    min_folds: int = 2
    warm_folds: int = 2  # the newest folds a warm wave re-scores on
    cold_trials: int = 20
    warm_trials: int = 2
    keep_margin: float = 0.02
    min_train_days: int = 56
    # TPE learns from this many of the most recent trials (about ten waves): recent data
    # matter most, and copying trials in costs ~0.3 ms each.
    history_trials: int = 50
    families: tuple[str, ...] = FAMILIES
    selection: str = "one_se"
    combine_top: int = 3
    reselect_every: int = 8
    drift_ratio: float = 1.5
    # AutoARIMA's stepwise search is ~linear in length: a year costs about half of two.
    select_days: int = YEAR
    calendar: CalendarConfig = field(default_factory=CalendarConfig)

    @property
    def rule(self) -> SelectionRule:
        if self.selection == "margin":
            return SelectionRule(kind="margin", margin=self.keep_margin)
        return SelectionRule(kind="one_se", margin=self.keep_margin)


@dataclass(frozen=True)
class Choice:
    """What a series' selection leaves for its warm waves, as plain data."""

    champion: Candidate
    structures: dict[str, Candidate]
    score: float  # the champion's mean fold error when it was chosen
    waves: int = 0  # warm waves since the last full selection
    # The group model whose folds the choice was scored on (None: the series' own folds).
    group_version: str | None = None
    # The champion's 80 % band as multipliers of its forecast (retrain.kernel.bands). A
    # choice saved with an additive ``interval`` before has none: its next wave re-scores.
    band: Band | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion.as_dict(),
            "structures": {k: v.as_dict() for k, v in self.structures.items()},
            "score": self.score,
            "waves": self.waves,
            "group_version": self.group_version,
            "band": list(self.band) if self.band is not None else None,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Choice":
        return cls(
            Candidate.from_dict(values["champion"]),
            {k: Candidate.from_dict(v) for k, v in values["structures"].items()},
            float(values["score"]),
            int(values.get("waves", 0)),
            values.get("group_version"),
            (float(values["band"][0]), float(values["band"][1])) if values.get("band") else None,
        )


@dataclass(frozen=True)
class Tuned:
    """The chosen candidate, its score and what decided (its band is in ``choice``)."""

    champion: Candidate
    mae: float
    mase: float
    runner_up: Candidate | None
    runner_up_mae: float | None
    choice: Choice
    trials: int
    warm: bool
    reselected: bool = False
    family_errors: dict[str, float] = field(default_factory=dict)


def combo(members: list[Candidate]) -> Candidate:
    """The equal-weight mean of ``members``."""
    return Candidate("combo", {"members": [m.as_dict() for m in members]})


def members_of(candidate: Candidate) -> list[Candidate]:
    if candidate.family == "combo":
        return [Candidate.from_dict(m) for m in candidate.params["members"]]
    return [candidate]


class _Scores:
    """Each candidate's fold forecasts and per-fold errors, computed once."""

    def __init__(
        self,
        history: History,
        data: SeriesData,
        closures: Closures,
        folds: list[Fold],
        options: FitOptions,
        group: GroupView | None = None,
    ) -> None:
        self.data = data
        self.folds = folds
        self.options = options
        self.group = group
        self.forecasts: dict[str, list[np.ndarray]] = {}
        self.errors: dict[str, list[float]] = {}
        self.candidates: dict[str, Candidate] = {}
        self.failed: dict[str, str] = {}
        self.actuals = [history.values[f.cutoff : f.cutoff + f.horizon] for f in folds]
        # Closed days are not scored (nobody needs them forecast).
        self.counted = [~closures.closed[f.cutoff : f.cutoff + f.horizon] for f in folds]
        fast = data.gap_free and options.backend == "inprocess"
        self._prophet = FoldScorer(history, folds, options) if fast else None

    def score(self, candidate: Candidate) -> list[float]:
        """Its error on each fold; a candidate that fails raises (once: the failure is kept)."""
        key = candidate.key
        if key in self.failed:
            raise RetrainError(self.failed[key])
        if key in self.errors:
            return self.errors[key]
        try:
            if candidate.family == "combo":
                parts = [self._forecasts(m) for m in members_of(candidate)]
                found = [np.mean([p[i] for p in parts], axis=0) for i in range(len(self.folds))]
            else:
                found = self._forecasts(candidate)
        except Exception as exc:  # one family failing leaves the others
            self.failed[key] = f"{candidate.family}: {type(exc).__name__}: {exc}"
            raise RetrainError(self.failed[key]) from exc
        self.forecasts[key] = found
        self.candidates[key] = candidate
        self.errors[key] = [
            float(np.mean(np.abs(a - np.maximum(y, 0))[c])) if c.any() else 0.0
            for a, y, c in zip(self.actuals, found, self.counted, strict=True)
        ]
        return self.errors[key]

    def _forecasts(self, candidate: Candidate) -> list[np.ndarray]:
        if candidate.key in self.forecasts:
            return self.forecasts[candidate.key]
        if candidate.family == GLOBAL:
            if self.group is None:
                raise RetrainError("No group model serves this series.")
            return [self.group.fold(f.cutoff) for f in self.folds]
        if candidate.family == "prophet" and self._prophet is not None:
            params = Params.from_dict(candidate.params) if candidate.params else DEFAULT_PARAMS
            return self._prophet.forecasts(params)
        out = []
        for fold in self.folds:
            began = time.perf_counter()
            out.append(forecast(candidate, self.data, fold.cutoff, fold.horizon, self.options))
            if candidate.family != "prophet":  # fit_prophet counts its own
                self.options.stats.fits += 1
                self.options.stats.seconds += time.perf_counter() - began
        return out

    def mean(self, key: str) -> float:
        return float(np.mean(self.errors[key]))

    def band(self, key: str) -> Band:
        """``key``'s 80 % band from its fold ratios, pooled with the group model's."""
        ratios = fold_ratios(self.actuals, self.forecasts[key], self.counted)
        return pooled_band(ratios, self.group.band if self.group is not None else None)


def _kept(previous: Choice, history: History) -> Tuned:
    """A warm wave on the folds the champion was chosen on: it stays, nothing is scored."""
    scale = mase_scale(history.values)
    return Tuned(
        champion=previous.champion,
        mae=previous.score,
        mase=previous.score / scale if scale > 0 else float("inf"),
        runner_up=None,
        runner_up_mae=None,
        choice=previous,
        trials=0,
        warm=True,
        family_errors={previous.champion.family: previous.score},
    )


def suggest(
    trial: optuna.Trial, allowed: tuple[str, ...], structures: dict[str, Candidate], holidays: bool
) -> Candidate:
    """The search space: ``family`` (always the full list: Optuna's categoricals are fixed),
    with Prophet's priors conditional on it. A family this series does not use is pruned."""
    family = str(trial.suggest_categorical("family", list(FAMILIES)))
    if family not in allowed:
        raise optuna.TrialPruned(f"{family} is not a candidate for this series")
    if family == "prophet":
        mode = trial.suggest_categorical("seasonality_mode", ["additive", "multiplicative"])
        params = Params(
            changepoint_prior_scale=trial.suggest_float(
                "changepoint_prior_scale", 0.001, 0.5, log=True
            ),
            seasonality_prior_scale=trial.suggest_float(
                "seasonality_prior_scale", 0.01, 10.0, log=True
            ),
            seasonality_mode="multiplicative" if mode == "multiplicative" else "additive",
            holidays_prior_scale=(
                trial.suggest_float("holidays_prior_scale", 0.01, 10.0, log=True)
                if holidays
                else 10.0
            ),
        )
        return Candidate("prophet", params.as_dict())
    if family == "topdown":
        return Candidate(
            "topdown",
            {
                name: trial.suggest_categorical(name, list(choices))
                for name, choices in TOPDOWN_CHOICES.items()
            },
        )
    return structures.get(family, Candidate(family))


def _allowed(
    config: TuneConfig,
    closures: Closures,
    history: History,
    data: SeriesData,
    first_cutoff: int,
    group: GroupView | None,
) -> tuple[str, ...]:
    zero_share = float(np.mean(history.values <= 0))
    return tuple(
        f
        for f in config.families
        # Intermittent models only for slow movers with many zero days.
        if (f not in INTERMITTENT or (not closures.busy and zero_share >= 0.3))
        # Top-down needs the store's total and a year and a quarter before the oldest fold.
        and (f != "topdown" or (data.pool is not None and first_cutoff >= TOPDOWN_MIN_DAYS))
        and (f != GLOBAL or group is not None)
    )


def series_folds(
    length: int, config: TuneConfig, group: GroupView | None
) -> tuple[list[Fold], GroupView | None]:
    """The validation folds: the group model's (so that every family, ``global`` included,
    is scored on the same days) where they fit in this history, else the series' own latest
    windows (and no ``global``)."""
    if group is not None:
        shared = [
            Fold(c, config.horizon)
            for c in group.cutoffs
            if c >= config.min_train_days and c + config.horizon <= length
        ]
        if len(shared) >= config.min_folds:
            return shared, group
    return rolling_folds(length, config.horizon, config.folds, config.min_train_days), None


def tune(
    history: History,
    data: SeriesData,
    closures: Closures,
    study: "optuna.Study | Callable[[], optuna.Study]",
    config: TuneConfig,
    options: FitOptions,
    previous: Choice | None,
    group: GroupView | None = None,
) -> Tuned:
    """Run this wave's selection for ``study`` (see the module docstring); ``previous`` set
    means warm. ``group``: the group model's view of the series (``global`` joins the
    candidates, scored on the group's folds)."""
    folds, group = series_folds(len(history.values), config, group)
    version = group.version if group is not None else None
    if len(folds) < config.min_folds:
        raise RetrainError(
            f"{len(history.values)} days of history are too short for {config.min_folds} "
            f"validation folds of {config.horizon} days after {config.min_train_days} training "
            "days."
        )
    # A warm wave re-scores on the newest folds only (the 7 new days are in them): half the
    # fits of a full re-score; a re-selection uses every fold.
    warm_folds = folds[-max(config.warm_folds, config.min_folds) :]
    scores = _Scores(history, data, closures, warm_folds if previous else folds, options, group)
    allowed = _allowed(config, closures, history, data, folds[0].cutoff, group)
    holidays = data.holidays is not None

    warm = previous is not None
    reselected = False
    structures: dict[str, Candidate] = dict(previous.structures) if previous else {}
    # The same group folds as when the champion was chosen: its fold errors cannot have
    # changed, so this wave only refits the champion (a prediction when it is ``global``).
    if (
        previous is not None
        and version is not None
        and previous.group_version == version
        and previous.band is not None
    ):
        return _kept(previous, history)
    # Read only now: a kept champion needs none of the past trials (a study table builds its
    # study from them on this call).
    if callable(study):
        study = study()
    past = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    past = past[-config.history_trials :]
    scratch = optuna.create_study(direction="minimize", sampler=study.sampler)
    scratch.add_trials(past)
    if previous is not None and (previous.group_version is None) != (version is None):
        # Switched between the series' own folds and the group's: the score is not comparable,
        # so every candidate is scored again; the structures chosen before still hold.
        warm, reselected = False, True
        scores = _Scores(history, data, closures, folds, options, group)
    elif previous is not None:
        try:
            champion_error = float(np.mean(scores.score(previous.champion)))
        except RetrainError:
            champion_error = float("inf")  # it no longer fits: select again
        drifted = not champion_error <= previous.score * config.drift_ratio
        if previous.waves + 1 >= config.reselect_every or drifted:
            warm, reselected, structures = False, True, {}
            scores = _Scores(history, data, closures, folds, options, group)

    def structure(family: str) -> Candidate:
        if family not in structures:
            if family in AUTO_FAMILIES and not warm:
                began = time.perf_counter()
                structures[family] = select_structure(family, data.filled[-config.select_days :])
                options.stats.seconds += time.perf_counter() - began
            else:
                structures[family] = Candidate(family)
        return structures[family]

    def objective(trial: optuna.Trial) -> float:
        family = trial.params.get("family") or trial.suggest_categorical("family", list(FAMILIES))
        if family in AUTO_FAMILIES and family in allowed:
            if warm and family not in structures:
                raise optuna.TrialPruned("no structure selected yet; a cold wave selects it")
            structure(str(family))
        candidate = suggest(trial, allowed, structures, holidays)
        trial.set_user_attr("candidate", candidate.as_dict())
        return float(np.mean(scores.score(candidate)))

    if warm:
        n_trials = config.warm_trials
    else:
        for family in allowed:
            first: dict[str, Any] = {"family": family}
            if family == "prophet":
                first.update(DEFAULT_PARAMS.as_dict())
                if not holidays:
                    first.pop("holidays_prior_scale")
            elif family == "topdown":
                first.update(TOPDOWN_DEFAULT)
            scratch.enqueue_trial(first, skip_if_exists=False)
        n_trials = max(config.cold_trials, len(allowed))
    scratch.optimize(objective, n_trials=n_trials, catch=(Exception,))
    new_trials = scratch.get_trials(deepcopy=False)[len(past) :]
    study.add_trials(new_trials)
    if not scores.errors:
        raise RetrainError("Every candidate failed to fit; see the trials' errors in the study.")

    # The best of each family, then their combination.
    best: dict[str, str] = {}
    for key, candidate in scores.candidates.items():
        if candidate.family == "combo":
            continue
        family = candidate.family
        if family not in best or scores.mean(key) < scores.mean(best[family]):
            best[family] = key
    ranked = sorted(best.values(), key=scores.mean)
    pool = [scores.candidates[k] for k in ranked]
    if warm and previous is not None:
        incumbent = previous.champion
        for member in members_of(incumbent):
            scores.score(member)
    else:
        # The default: the better of the means of the best two .. combine_top families.
        combos = [combo(pool[:k]) for k in range(2, config.combine_top + 1) if k <= len(pool)]
        for candidate in combos:
            scores.score(candidate)
        incumbent = min(combos, key=lambda c: scores.mean(c.key)) if combos else pool[0]
    scores.score(incumbent)
    contenders = {incumbent.key: scores.errors[incumbent.key]}
    contenders.update({c.key: scores.errors[c.key] for c in pool})
    chosen_key = pick(incumbent.key, contenders, config.rule)
    champion = scores.candidates[chosen_key]
    others = sorted((k for k in contenders if k != chosen_key), key=scores.mean)
    runner = scores.candidates[others[0]] if others else None
    score = scores.mean(chosen_key)
    scale = mase_scale(history.values)
    choice = Choice(
        champion=champion,
        structures={k: v for k, v in structures.items() if v.params},
        score=score if not warm or previous is None else previous.score,
        waves=0 if not warm or previous is None else previous.waves + 1,
        group_version=version,
        band=scores.band(chosen_key),
    )
    return Tuned(
        champion=champion,
        mae=score,
        mase=score / scale if scale > 0 else float("inf"),
        runner_up=runner,
        runner_up_mae=scores.mean(others[0]) if others else None,
        choice=choice,
        trials=len(new_trials),
        warm=warm,
        reselected=reselected,
        family_errors={scores.candidates[k].family: scores.mean(k) for k in ranked},
    )
