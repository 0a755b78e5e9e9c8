"""What ``shelfcast status`` prints of the coordinator's status."""

import pyarrow as pa

from shelfcast.status import count_series, render_status


def test_status_lists_each_outage_with_the_series_waiting_for_it() -> None:
    coordinator = {
        "queued": 3, "running": 0, "capacity": 2, "poisoned": {}, "retrains_last_minute": 0,
        "published": 7, "latest": [],
        "outages": {"MLflow": {"series": 3, "since": 1_700_000_000.0,
                               "error": "MLflow is unreachable", "example": "S1|A"}},
    }  # fmt: skip
    text = render_status(
        {"service": {}, "lag": {}, "series": {}, "families": {}, "coordinator": coordinator}
    )
    assert (
        "  3 series waiting for MLflow since 2023-11-14T22:13:20 (an outage, retried until it "
        "answers): MLflow is unreachable"
    ) in text.splitlines()


def test_status_says_how_many_series_a_task_takes_when_more_than_one() -> None:
    coordinator = {
        "queued": 900, "running": 64, "capacity": 2, "poisoned": {}, "retrains_last_minute": 0,
        "published": 7, "latest": [], "outages": {},
    }  # fmt: skip
    status = {"service": {}, "lag": {}, "series": {}, "families": {}}
    one = render_status({**status, "coordinator": {**coordinator, "batch_size": 1}})
    assert "64 running on 2 CPUs, 0 poisoned" in one
    batched = render_status({**status, "coordinator": {**coordinator, "batch_size": 32}})
    assert "64 running on 2 CPUs (up to 32 a task), 0 poisoned" in batched


def test_status_shows_each_group_model_and_the_step_its_retrain_is_at() -> None:
    groups = {
        "all": {"version": 3, "through": "2024-06-01", "series": 100_000,
                "validation_mae": 2.3456, "training": True, "training_seconds": 312.4,
                "progress": "trial 2/3, fold 1/2: predicting 100,000 series", "error": None},
        "hash-0001": {"version": None, "training": False, "error": "RetrainError: no sales"},
    }  # fmt: skip
    coordinator = {
        "queued": 0, "running": 0, "capacity": 2, "poisoned": {}, "retrains_last_minute": 0,
        "published": 0, "latest": [], "outages": {}, "groups": groups,
    }  # fmt: skip
    lines = render_status(
        {"service": {}, "lag": {}, "series": {}, "families": {}, "coordinator": coordinator}
    ).splitlines()
    assert (
        "  group model all: v3 through 2024-06-01, 100,000 series, validation MAE 2.346; "
        "training for 312 s: trial 2/3, fold 1/2: predicting 100,000 series"
    ) in lines
    assert "  group model hash-0001: none yet; its last retrain failed: RetrainError: no sales" in (
        lines
    )


def test_series_are_counted_by_state_and_by_family_with_no_state_as_new() -> None:
    table = pa.table(
        {
            "status": ["ok", None, "", "ok", "failed"],
            "family": ["global", None, "", "combo", "global"],
        }
    )
    assert count_series(table) == ({"ok": 2, "new": 2, "failed": 1}, {"global": 2, "combo": 1})
    # A table from before the family column; no table yet.
    assert count_series(table.drop_columns(["family"])) == ({"ok": 2, "new": 2, "failed": 1}, {})
    assert count_series(None) == ({}, {})
