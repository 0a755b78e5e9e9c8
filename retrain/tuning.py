"""Optuna re-tuning of one series on rolling-origin folds, warm or cold.

The study is handed in (its storage is chosen at the edge, in :mod:`retrain.studies`).
Warm: the incumbent params are enqueued and a few new trials follow, TPE learning from the
study's recent trials (its last waves). Cold: Prophet's defaults are enqueued, then a full search.
Tuned params replace the baseline (incumbent or defaults) only when they beat it by a margin:
on a few folds small wins are mostly noise.

The wave's trials run on an in-memory copy of the study's most recent trials and are written
back at the end, one storage write per trial: run on the persisted study itself, every
suggestion and report is its own write (each with an fsync on a journal file), about six per
trial. A task that dies before the end leaves no trials behind; its retry runs them again.
"""

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from retrain.errors import RetrainError
from retrain.folds import FoldScorer
from retrain.prophet_fit import DEFAULT_PARAMS, FitOptions, Params, ScoredParams, score_params
from retrain.series import History, rolling_folds

__all__ = ["TuneConfig", "Tuned", "suggest_params", "tune"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class TuneConfig:
    """The tuning knobs (from settings)."""

    horizon: int = 28
    folds: int = 4  # at most; a younger series uses what its history allows
    min_folds: int = 2
    cold_trials: int = 20
    warm_trials: int = 2
    keep_margin: float = 0.02
    min_train_days: int = 56
    # TPE learns from this many of the most recent trials (about ten waves): recent data
    # matter most, and copying trials in costs ~0.3 ms each.
    history_trials: int = 50


@dataclass(frozen=True)
class Tuned:
    """The chosen params and their validation score."""

    best: ScoredParams
    trials: int
    warm: bool


def suggest_params(trial: optuna.Trial) -> Params:
    """The search space."""
    mode = trial.suggest_categorical("seasonality_mode", ["additive", "multiplicative"])
    return Params(
        changepoint_prior_scale=trial.suggest_float(
            "changepoint_prior_scale", 0.001, 0.5, log=True
        ),
        seasonality_prior_scale=trial.suggest_float(
            "seasonality_prior_scale", 0.01, 10.0, log=True
        ),
        seasonality_mode="multiplicative" if mode == "multiplicative" else "additive",
    )


def tune(
    history: History,
    study: optuna.Study,
    config: TuneConfig,
    options: FitOptions,
    incumbent: Params | None,
) -> Tuned:
    """Run this wave's trials for ``study`` (see the module docstring); ``incumbent`` set
    means warm."""
    folds = rolling_folds(len(history.values), config.horizon, config.folds, config.min_train_days)
    if len(folds) < config.min_folds:
        raise RetrainError(
            f"{len(history.values)} days of history are too short for {config.min_folds} "
            f"validation folds of {config.horizon} days after {config.min_train_days} training "
            "days."
        )
    past = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    past = past[-config.history_trials :]
    warm = incumbent is not None and len(past) > 0
    baseline = incumbent if warm and incumbent is not None else DEFAULT_PARAMS
    scratch = optuna.create_study(direction="minimize", sampler=study.sampler)
    scratch.add_trials(past)
    scratch.enqueue_trial(baseline.as_dict(), skip_if_exists=False)
    n_trials = 1 + (config.warm_trials if warm else max(config.cold_trials - 1, 0))
    if warm:
        # The best of earlier waves gets re-scored on today's data too.
        best_past = min(past, key=lambda t: t.value if t.value is not None else float("inf"))
        if Params.from_dict(best_past.params) != baseline:
            scratch.enqueue_trial(best_past.params, skip_if_exists=False)
            n_trials += 1
    scored: list[ScoredParams] = []

    if options.backend == "inprocess":
        score: Callable[[Params], ScoredParams] = FoldScorer(history, folds, options)
    else:

        def score(params: Params) -> ScoredParams:
            return score_params(history, params, folds, options)

    def objective(trial: optuna.Trial) -> float:
        result = score(suggest_params(trial))
        trial.set_user_attr("mase", result.mase)
        scored.append(result)
        return result.mae

    scratch.optimize(objective, n_trials=n_trials, catch=(Exception,))
    study.add_trials(scratch.get_trials(deepcopy=False)[len(past) :])
    if not scored:
        raise RetrainError("Every trial failed to fit; see the trials' errors in the study.")
    base_score = next((s for s in scored if s.params == baseline), None)
    best = min(scored, key=lambda s: s.mae)
    if base_score is not None and best.mae > base_score.mae * (1 - config.keep_margin):
        best = base_score
    return Tuned(best=best, trials=len(scored), warm=warm)
