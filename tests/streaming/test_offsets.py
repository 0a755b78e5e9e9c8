from streaming.offsets import advance, limit_range


def test_advance_never_moves_back_and_starts_new_partitions_at_their_floor() -> None:
    assert advance({"0": 10}, {0: 8, 1: 5}, {0: 0, 1: 2}) == {"0": 10, "1": 5}


def test_limit_shares_the_budget_fairly_and_gives_unused_share_away() -> None:
    end = limit_range({"0": 0, "1": 0, "2": 0}, {"0": 100, "1": 3, "2": 100}, 53)
    assert sum(end.values()) == 53
    assert end["1"] == 3 and abs(end["0"] - end["2"]) <= 1


def test_limit_is_a_no_op_when_everything_fits() -> None:
    assert limit_range({"0": 5}, {"0": 9}, 100) == {"0": 9}
