from retrain.cluster.policy import RetryPolicy, policy_from_settings
from shelfcast.settings import load_settings


def test_the_policy_takes_the_timeout_attempts_and_backoff_from_the_settings() -> None:
    settings = load_settings(
        retrain_task_timeout_seconds=45, retrain_max_attempts=5, retrain_retry_backoff_seconds=1
    )
    assert policy_from_settings(settings) == RetryPolicy(5, 1.0, 45.0)
    assert policy_from_settings(load_settings()).task_timeout_seconds == 600
