"""One Optuna study per group over the group model's few important parameters.

Trials are scored on the group's newest rolling-origin folds (pooled MAE over every series'
open days); the study persists between group retrains, so a retrain is warm: the best
parameters so far are re-scored on today's folds beside a few new TPE trials, and the better
one is fitted. The reference parameters (the untuned defaults) are the first trial of a new
study, so tuning never ends worse than them on the folds.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import optuna

from retrain.group.features import GroupSeries
from retrain.group.model import (
    GroupModel,
    GroupParams,
    Progress,
    fit_group,
    silent,
    validate_group,
)

__all__ = ["GroupTuneConfig", "suggest_params", "tune_group"]


@dataclass(frozen=True)
class GroupTuneConfig:
    """How a group retrain searches (from settings)."""

    horizon: int = 28
    folds: int = 4  # the folds the series' selection scores ``global`` on
    tune_folds: int = 2  # the newest folds a trial is scored on
    cold_trials: int = 6
    warm_trials: int = 2
    history_trials: int = 40
    use_plans: bool = True
    seed: int = 0
    max_rows: int = 5_000_000  # training rows at most (retrain.group.model.MAX_TRAIN_ROWS)
    threads: int = 1  # LightGBM's: the CPUs the group retrain's Ray task holds


def suggest_params(trial: optuna.Trial) -> GroupParams:
    """The search space: leaves, learning rate and rounds, minimum child samples, feature
    fraction and the target transform. Bounded so that the dearest trial costs about three
    times the reference (a fit's cost grows with leaves x rounds)."""
    return GroupParams(
        num_leaves=trial.suggest_int("num_leaves", 15, 127, log=True),
        learning_rate=trial.suggest_float("learning_rate", 0.02, 0.1, log=True),
        n_estimators=trial.suggest_int("n_estimators", 200, 1000, log=True),
        min_child_samples=trial.suggest_int("min_child_samples", 5, 100, log=True),
        feature_fraction=trial.suggest_float("feature_fraction", 0.5, 1.0),
        transform=str(trial.suggest_categorical("transform", ["log1p", "none"])),
    )


def tune_group(
    series: Sequence[GroupSeries],
    through: date,
    study: optuna.Study,
    config: GroupTuneConfig,
    progress: Progress = silent,
) -> GroupModel:
    """This retrain's search for ``study``, then the best parameters fitted through
    ``through`` with their validation folds; ``progress`` is told each step."""
    past = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    past = past[-config.history_trials :]
    scratch = optuna.create_study(direction="minimize", sampler=study.sampler)
    scratch.add_trials(past)
    if past:
        best = min(past, key=lambda t: float(t.value if t.value is not None else "inf"))
        scratch.enqueue_trial(best.params, skip_if_exists=False)
        trials = 1 + config.warm_trials
    else:
        scratch.enqueue_trial(GroupParams().as_dict(), skip_if_exists=False)
        trials = config.cold_trials
    scored: dict[str, tuple[GroupParams, float]] = {}

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial)
        key = repr(params)
        step = f"trial {trial.number - len(past) + 1}/{trials}"
        if key not in scored:
            score = validate_group(
                series,
                through,
                params,
                config.use_plans,
                config.horizon,
                config.tune_folds,
                config.seed,
                config.max_rows,
                threads=config.threads,
                progress=lambda text: progress(f"{step}, {text}"),
            ).score
            scored[key] = (params, score)
        return scored[key][1]

    scratch.optimize(objective, n_trials=trials)
    study.add_trials(scratch.get_trials(deepcopy=False)[len(past) :])
    params, score = min(scored.values(), key=lambda found: found[1])
    model = fit_group(
        series,
        through,
        params,
        config.use_plans,
        config.horizon,
        config.folds,
        config.seed,
        config.max_rows,
        config.threads,
        lambda text: progress(f"the best of {len(scored)} trials, {text}"),
    )
    model.tuning_score = score
    return model
