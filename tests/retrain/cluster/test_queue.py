from retrain.cluster.queue import Request, RetrainQueue


def req(item: str, priority: float = 0.0) -> Request:
    return Request("S1", item, priority)


def test_highest_priority_first_then_oldest() -> None:
    q = RetrainQueue()
    q.submit([req("a", 1), req("b", 5), req("c", 1)], version=3, wave_id="w", now=0)
    assert [j.item_id for j in q.take(0, 2)] == ["b", "a"]
    assert [j.item_id for j in q.take(0, 5)] == ["c"]


def test_resubmit_while_queued_coalesces_to_newest_version() -> None:
    q = RetrainQueue()
    q.submit([req("a", 1)], version=3, wave_id="w1", now=0)
    q.submit([req("a", 4)], version=5, wave_id="w2", now=1)
    jobs = q.take(2, 10)
    assert len(jobs) == 1 and jobs[0].version == 5 and jobs[0].priority == 4
    assert q.waves["w1"].moved == 1 and q.waves["w2"].pending == {"S1|a"}


def test_resubmit_while_running_trains_once_more_on_newest() -> None:
    q = RetrainQueue()
    q.submit([req("a")], version=1, wave_id="w1", now=0)
    assert len(q.take(0, 1)) == 1
    for version in (2, 3, 4):
        q.submit([req("a")], version=version, wave_id=f"v{version}", now=1)
    assert q.take(1, 5) == []  # still running: no second copy in parallel
    q.succeed("S1|a", now=2)
    (again,) = q.take(2, 5)
    assert again.version == 4
    q.succeed("S1|a", now=3)
    assert q.take(3, 5) == [] and not q.queued and not q.running
    assert q.waves["v4"].done == 1 and q.waves["v4"].finished_at == 3


def test_failures_back_off_then_poison_until_data_changes() -> None:
    q = RetrainQueue(max_attempts=3, backoff_seconds=10)
    q.submit([req("a")], version=7, wave_id="w", now=0)
    q.take(0, 1)
    assert q.fail("S1|a", "boom", now=0) == "queued"
    assert q.take(5, 1) == []  # backing off 10 s
    assert q.next_due(5) == 5
    q.take(10, 1)
    assert q.fail("S1|a", "boom", now=10) == "queued"  # next wait 20 s
    assert q.take(29, 1) == []
    q.take(30, 1)
    assert q.fail("S1|a", "boom again", now=30) == "poison"
    assert (q.poison["S1|a"].version, q.poison["S1|a"].error) == (7, "boom again")
    assert q.waves["w"].failed == 1 and q.waves["w"].finished_at == 30
    skipped = q.submit([req("a")], version=7, wave_id="w2", now=31)
    assert skipped.skipped == 1 and not q.queued
    q.submit([req("a")], version=8, wave_id="w3", now=32)
    assert "S1|a" not in q.poison and q.take(32, 1)[0].attempts == 0


def test_updates_tell_the_driver_each_state_change() -> None:
    q = RetrainQueue()
    q.submit([req("a")], version=1, wave_id="w", now=0)
    q.take(0, 1)
    q.succeed("S1|a", now=1, model_version="3")
    states = [(u["status"], u.get("model_version")) for u in q.drain_updates()]
    assert states == [("queued", None), ("running", None), ("done", "3")]
    assert q.drain_updates() == []


def test_poison_holds_until_the_series_own_data_grows_whatever_the_table_version() -> None:
    q = RetrainQueue(max_attempts=1)
    q.submit([Request("S1", "a", 0, data=40)], version=7, wave_id="w", now=0)
    q.take(0, 1)
    assert q.fail("S1|a", "boom", now=0) == "poison"
    q.drain_updates()
    # Other series' batches bump daily_sales; S1|a's own data did not change.
    for version in (8, 9, 50):
        wave = q.submit([Request("S1", "a", 0, data=40)], version, f"v{version}", now=1)
        assert wave.skipped == 1 and not q.queued
    # Each skip is told, so that a driver that marked the series queued sees it is not.
    assert {u["status"] for u in q.drain_updates()} == {"poison"}
    q.submit([Request("S1", "a", 0, data=41)], version=51, wave_id="new", now=2)
    assert "S1|a" not in q.poison and q.take(2, 1)[0].data == 41


def test_a_submission_without_data_falls_back_to_the_table_version() -> None:
    q = RetrainQueue(max_attempts=1)
    q.submit([Request("S1", "a", 0, data=40)], version=7, wave_id="w", now=0)
    q.take(0, 1)
    q.fail("S1|a", "boom", now=0)
    assert q.submit([req("a")], version=7, wave_id="same", now=1).skipped == 1
    assert q.submit([req("a")], version=8, wave_id="by-hand", now=1).skipped == 0


def test_take_matches_a_full_sort_through_coalescing_retries_and_backoff() -> None:
    """The heap hands out what sorting every ready job by (priority, arrival) would."""
    import random

    rng = random.Random(3)
    q = RetrainQueue(max_attempts=4, backoff_seconds=1)
    now = 0.0
    for step in range(400):
        now += 0.25
        action = rng.random()
        if action < 0.5:
            items = [req(f"i{rng.randrange(60)}", float(rng.randrange(5))) for _ in range(3)]
            q.submit(items, version=step, wave_id=f"w{step}", now=now)
        elif action < 0.8:
            ready = [j for j in q.queued.values() if j.not_before <= now]
            expected = sorted(ready, key=lambda j: (-j.priority, j.seq))[:2]
            assert q.take(now, 2) == expected
        elif q.running:
            key = rng.choice(sorted(q.running))
            if rng.random() < 0.5:
                q.succeed(key, now)
            else:
                q.fail(key, "boom", now)
        due = q.next_due(now)
        if q.queued:
            soonest = min(j.not_before for j in q.queued.values())
            assert due == max(0.0, soonest - now)
        else:
            assert due is None


def test_an_outage_is_retried_with_a_bounded_backoff_and_never_poisons() -> None:
    q = RetrainQueue(max_attempts=2, backoff_seconds=1, outage_max_seconds=8)
    q.submit([req("a")], version=7, wave_id="w", now=0)
    delays, now = [], 0.0
    for _ in range(6):  # far more outages than attempts: still queued, never poison
        (job,) = q.take(now, 1)
        assert q.fail("S1|a", "MLflow away", now, outage="MLflow") == "outage"
        due = q.next_due(now)
        assert due is not None
        delays.append(due)
        now += due
    assert delays == [1, 2, 4, 8, 8, 8]  # doubling from the backoff, capped
    assert job.attempts == 0 and "S1|a" not in q.poison
    assert q.depth()["outage"] == 1
    (summary,) = q.outage_summary().values()
    assert summary["series"] == 1 and summary["since"] == 0 and summary["error"] == "MLflow away"
    assert q.updates[-1]["status"] == "queued" and q.updates[-1]["outage"] == "MLflow"
    assert q.updates[-1]["error"] == "MLflow away"  # the series' last_error meanwhile

    # Once the system is back, the series' own failures count as before.
    q.take(now, 1)
    assert q.fail("S1|a", "its model broke", now) == "queued"
    assert q.depth()["outage"] == 0
    (job,) = q.take(now + 1, 1)
    assert job.attempts == 1
    assert q.fail("S1|a", "its model broke", now + 1) == "poison"


def test_a_success_ends_the_outage_and_its_backoff() -> None:
    q = RetrainQueue(backoff_seconds=1)
    q.submit([req("a")], version=1, wave_id="w", now=0)
    for now in (0, 1, 3):
        q.take(now, 1)
        q.fail("S1|a", "Kafka away", now, outage="Kafka")
    q.take(7, 1)
    q.succeed("S1|a", now=7)
    assert q.outage_summary() == {} and q.waves["w"].done == 1
    q.submit([req("a")], version=2, wave_id="w2", now=8)
    (job,) = q.take(8, 1)
    assert job.outages == 0
