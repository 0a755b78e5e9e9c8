"""The retrain side's typed config, built from the settings (the lower package never reads
them itself)."""

from typing import TYPE_CHECKING

from retrain.cluster.policy import RetryPolicy
from retrain.config import CoordinatorConfig, PublishConfig, RayConfig, RetrainConfig
from shelfcast.settings import Settings

if TYPE_CHECKING:
    from retrain.cluster.task import TaskSpec

__all__ = ["ray_config", "retrain_config", "retry_policy", "task_spec"]


def ray_config(settings: Settings) -> RayConfig:
    """The Ray cluster and its coordinators (all a driver needs to join it or read status)."""
    return RayConfig(
        address=settings.ray_address,
        namespace=settings.ray_namespace,
        coordinator_resource=settings.ray_coordinator_resource,
        coordinator_shards=settings.ray_coordinator_shards,
        coordinator_detached=settings.ray_coordinator_detached,
    )


def retrain_config(settings: Settings) -> RetrainConfig:
    """Everything the retrain side uses: Ray, and what its coordinators hold."""
    from shelfcast.kafka import producer_config

    return RetrainConfig(
        ray=ray_config(settings),
        coordinator=CoordinatorConfig(
            data_dir=settings.data_dir,
            delta_dir=settings.delta_dir,
            task=task_spec(settings),
            policy=retry_policy(settings),
            publish=PublishConfig(settings.topic_forecasts, producer_config(settings)),
            artifact_dir=None if settings.mlflow_tracking_uri else settings.artifact_dir,
            batch_size=settings.retrain_batch_size,
            batch_seconds=settings.retrain_batch_seconds,
        ),
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.retrain_max_attempts,
        backoff_seconds=settings.retrain_retry_backoff_seconds,
        task_timeout_seconds=settings.retrain_task_timeout_seconds,
    )


def task_spec(settings: Settings) -> "TaskSpec":
    """What every retrain task needs (its stores' URLs among it, out of its repr)."""
    # Imported here: the task imports the kernel (Prophet, statsforecast), which a command
    # that only joins Ray or reads status does not load.
    from retrain.cluster.task import TaskSpec
    from retrain.group.config import GroupSpec
    from retrain.group.tuning import GroupTuneConfig
    from retrain.kernel.calendar import CalendarConfig
    from retrain.kernel.tuning import TuneConfig

    delta = settings.delta_dir
    return TaskSpec(
        daily_sales_uri=str((settings.delta_dir / "daily_sales").resolve()),
        history_days=settings.retrain_history_days,
        tune=TuneConfig(
            horizon=settings.retrain_horizon_days,
            folds=settings.retrain_folds,
            cold_trials=settings.retrain_cold_trials,
            warm_trials=settings.retrain_warm_trials,
            keep_margin=settings.retrain_keep_margin,
            warm_folds=settings.retrain_warm_folds,
            selection=settings.retrain_selection_rule,
            reselect_every=settings.retrain_reselect_every,
            drift_ratio=settings.retrain_drift_ratio,
            families=settings.retrain_families or TuneConfig.families,
            calendar=CalendarConfig(
                country=settings.retrain_holiday_country,
                subdivision=settings.retrain_holiday_subdivision,
                closure_min_level=settings.retrain_closure_min_level,
            ),
        ),
        backend=settings.fit_backend,
        uncertainty_samples=settings.retrain_uncertainty_samples,
        journal_dir=settings.optuna_dir,
        journal_shards=settings.optuna_journal_shards,
        optuna_url=(
            settings.optuna_storage.get_secret_value() if settings.optuna_storage else None
        ),
        tracking_uri=settings.tracking_uri,
        experiment=settings.mlflow_experiment,
        mlflow_retries=settings.mlflow_retries,
        plans_uri=str((delta / "plans").resolve()),
        stores_uri=str((delta / "stores").resolve()),
        groups=GroupSpec(
            enabled=settings.retrain_group_enabled,
            by=settings.retrain_group_by,
            buckets=settings.retrain_group_buckets,
            retrain_days=settings.retrain_group_retrain_days,
            retrain_hours=settings.retrain_group_retrain_hours,
            drift_series=settings.retrain_group_drift_series,
            history_days=settings.retrain_history_days
            + settings.retrain_group_folds * settings.retrain_horizon_days,
            cpus=settings.retrain_group_cpus,
            timeout_seconds=settings.retrain_group_timeout_seconds,
            wait_seconds=settings.retrain_group_wait_seconds,
            tune=GroupTuneConfig(
                horizon=settings.retrain_horizon_days,
                folds=settings.retrain_group_folds,
                cold_trials=settings.retrain_group_cold_trials,
                warm_trials=settings.retrain_group_warm_trials,
                threads=settings.retrain_group_cpus,
            ),
        ),
    )
