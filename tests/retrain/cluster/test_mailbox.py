from typing import Any

from retrain.cluster.mailbox import Mailbox


def news(*seqs: int) -> list[dict[str, Any]]:
    return [{"seq": s, "store_id": "S", "item_id": str(s), "status": "done"} for s in seqs]


def test_submissions_coalesce_per_series_while_nothing_is_sent() -> None:
    box = Mailbox()
    for version in range(1000):  # Ray away for a thousand micro-batches
        box.submit([("S", "a", 1.0, version), ("S", "b", 5.0, 3)], version)
    box.submit([("S", "a", 9.0, 2)], 7)
    assert box.pending == 2
    taken = box.take_submissions()
    assert taken == ([("S", "a", 9.0, 999, "sales", None), ("S", "b", 5.0, 3, "sales", None)], 999)
    assert box.take_submissions() is None
    box.submit([("S", "c", 0.0, 1)], 1000)
    box.restore(taken)  # the send failed: nothing lost, merged with what came meanwhile
    assert box.take_submissions() == (
        [
            ("S", "c", 0.0, 1, "sales", None),
            ("S", "a", 9.0, 999, "sales", None),
            ("S", "b", 5.0, 3, "sales", None),
        ],
        1000,
    )


def test_news_is_kept_until_acknowledged_and_fetched_only_once() -> None:
    box = Mailbox()
    box.receive(news(1, 2, 3))
    assert box.after == 3
    box.receive(news(2, 3, 4))  # fetched again: not doubled
    assert [u["seq"] for u in box.news()] == [1, 2, 3, 4]
    box.ack(3)
    assert [u["seq"] for u in box.news()] == [4]
    assert box.take_ack() == 3 and box.take_ack() is None
    assert box.after == 4


def test_an_ack_of_news_from_a_replaced_actor_is_dropped() -> None:
    box = Mailbox()
    box.receive(news(7, 8))
    read = box.news()
    box.replaced()  # a new actor numbers its news from 1 again
    box.receive(news(1, 2))
    box.ack(max(u["seq"] for u in read))
    assert [u["seq"] for u in box.news()] == [1, 2] and box.take_ack() is None


def test_the_inbox_is_bounded() -> None:
    box = Mailbox(limit=3)
    box.receive(news(1, 2))
    assert box.room == 1


def test_a_force_stays_a_force_when_coalesced() -> None:
    box = Mailbox()
    box.submit([("S", "a", 1.0, 40)], 1)
    box.submit([("S", "a", float("inf"), None)], 2)
    box.submit([("S", "a", 1.0, 41)], 3)
    assert box.take_submissions() == ([("S", "a", float("inf"), None, "sales", None)], 3)


def test_new_data_outranks_a_plan_change_as_the_reason() -> None:
    box = Mailbox()
    box.submit([("S", "a", 0.0, 5, "plan", None), ("S", "b", 0.0, 5, "plan", None)], 1)
    box.submit([("S", "a", 2.0, 6, "sales", None)], 2)
    box.submit([("S", "b", 0.0, 5, "plan", None)], 3)
    taken = box.take_submissions()
    assert taken == ([("S", "a", 2.0, 6, "sales", None), ("S", "b", 0.0, 5, "plan", None)], 3)
    box.submit([("S", "a", 0.0, 6, "plan", None)], 4)
    box.restore(taken)  # a failed send: the earlier "sales" still wins
    assert box.take_submissions() == (
        [("S", "a", 2.0, 6, "sales", None), ("S", "b", 0.0, 5, "plan", None)],
        4,
    )


def test_the_highest_served_version_stays_when_coalesced() -> None:
    box = Mailbox()
    box.submit([("S", "a", 1.0, 5, "sales", 7)], 1)
    box.submit([("S", "a", 1.0, 6, "sales", None)], 2)
    box.submit([("S", "b", 1.0, 6, "sales", None)], 2)
    assert box.take_submissions() == (
        [("S", "a", 1.0, 6, "sales", 7), ("S", "b", 1.0, 6, "sales", None)],
        2,
    )
