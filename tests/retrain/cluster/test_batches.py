"""How due series are split into tasks, and what a batch stopped at its limit says (pure)."""

from typing import cast

import pytest

from retrain.cluster.batches import Batch, Beat, Pace, TaskFailure, overrun, plan_batches
from retrain.cluster.queue import Job


def jobs(count: int, stores: int = 1) -> list[Job]:
    return [Job(f"S{k % stores}", f"I{k:03d}", 1, "w") for k in range(count)]


def store(job: Job) -> str:
    return job.store_id


def test_a_lone_series_starts_alone_and_a_wave_fills_every_slot_up_to_the_size() -> None:
    assert plan_batches([], 2, 32, store) == []
    assert [len(b) for b in plan_batches(jobs(1), 2, 32, store)] == [1]
    assert [len(b) for b in plan_batches(jobs(3), 2, 32, store)] == [2, 1]
    assert [len(b) for b in plan_batches(jobs(64), 2, 32, store)] == [32, 32]
    assert [len(b) for b in plan_batches(jobs(10), 8, 32, store)] == [2] * 5
    assert [len(b) for b in plan_batches(jobs(7), 2, 1, store)] == [1] * 7


def test_a_store_series_go_side_by_side_in_the_queue_order() -> None:
    taken = jobs(12, stores=3)
    batches = plan_batches(taken, 3, 4, store)
    assert [{j.store_id for j in b} for b in batches] == [{"S0"}, {"S1"}, {"S2"}]
    assert [j.item_id for j in batches[0]] == ["I000", "I003", "I006", "I009"]
    assert sorted(j.key for b in batches for j in b) == sorted(j.key for j in taken)


def batch(count: int) -> Batch:
    return Batch("b1", tuple(jobs(count)))


def test_a_series_over_its_limit_fails_and_its_batch_mates_are_retried_uncounted() -> None:
    beat = Beat(pid=7, first=0.0, at=0.0, since=0.0)
    beat.heard(4.0, "S0|I000", 5.0)  # the first series named counts from the start
    assert (beat.since, beat.cpu_at) == (0.0, 0.0)
    beat.heard(9.0, "S0|I001", 10.0)
    assert (beat.since, beat.cpu_at) == (10.0, 4.0)
    beat.heard(60.0, "S0|I001", 65.0)
    outcomes = overrun(batch(3), beat, 50.0, 66.0)
    held, *mates = [outcomes[1], outcomes[0], outcomes[2]]
    assert held.outage is None and "S0|I001 ran over 50 s" in held.error
    assert "(56 CPU-s)" in held.error  # its own CPU, not the batch's
    assert all(m.outage == "stopped batch" and "S0|I001" in m.error for m in mates)


def test_a_silent_or_waiting_series_over_its_limit_is_an_outage_not_its_failure() -> None:
    beat = Beat(pid=7, first=0.0, at=0.0, since=0.0)
    beat.heard(1.0, "S0|I000", 5.0)
    silent = overrun(batch(2), beat, 30.0, 31.0)
    assert silent[0].outage == "Ray" and "had not answered for 26 s" in silent[0].error
    beat.heard(2.0, "S0|I000", 30.0)
    waited = overrun(batch(2), beat, 30.0, 31.0)
    assert waited[0].outage == "stalled task"
    never = overrun(batch(2), None, 30.0, 31.0)
    assert never[0].outage == "Ray" and "did not start" in never[0].error
    assert never[1].outage == "stopped batch"


def test_a_task_takes_about_its_seconds_of_series_by_their_recent_mean() -> None:
    pace = Pace(seconds=2.0, largest=32)
    assert pace.size() == 1  # nothing finished yet: one a task
    pace.took(0.05)
    assert pace.size() == 32  # cheap: as many as allowed
    for _ in range(60):
        pace.took(1.0)
    assert pace.size() == 2  # the mix turned slow
    for _ in range(60):
        pace.took(30.0)
    assert pace.size() == 1


def test_once_a_shared_store_is_down_the_batch_s_other_series_are_not_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each would wait out the same outage in turn; a series' own failure stops nobody."""
    from retrain.cluster import task
    from retrain.errors import InfrastructureError, RetrainError

    tried: list[str] = []

    def run(job: Job, *_: object) -> object:
        tried.append(job.item_id)
        if job.item_id == "I000":
            raise RetrainError("its own data is broken")
        if job.item_id == "I001":
            raise InfrastructureError("MLflow did not answer", "MLflow")
        raise AssertionError("not tried after MLflow was down")

    monkeypatch.setattr(task, "_run", run)
    monkeypatch.setattr(task, "_studies", lambda spec: None)  # no stores: _run is replaced
    outcomes = task.run_batch(batch(4), cast(task.TaskSpec, None))
    assert tried == ["I000", "I001"]
    assert [o.outage for o in outcomes if isinstance(o, TaskFailure)] == [None, *["MLflow"] * 3]
    assert "Not tried: MLflow was down" in cast(TaskFailure, outcomes[2]).error
