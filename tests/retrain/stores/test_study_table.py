"""The series' study table on real SQLite files: what a wave reads and leaves behind, a cold
start, and a study moved from the Optuna journal of before."""

from pathlib import Path

import optuna
import pytest

from retrain.errors import InfrastructureError
from retrain.prophet.fit import Params
from retrain.stores.studies import StudyRef, legacy_study, open_study, save_warm_state
from retrain.stores.study_table import StudyTable

INIT = {"k": 0.1, "m": 0.5, "sigma_obs": 0.2, "delta": [0.0] * 3, "beta": [0.0] * 4}


def trials(study: optuna.Study, count: int, start: float = 0.0) -> None:
    """``count`` completed trials, as a wave's selection adds them."""
    for k in range(count):
        study.add_trial(
            optuna.trial.create_trial(
                value=start + k,
                params={"family": "prophet", "changepoint_prior_scale": 0.01 + k / 1000},
                distributions={
                    "family": optuna.distributions.CategoricalDistribution(["prophet", "ets"]),
                    "changepoint_prior_scale": optuna.distributions.FloatDistribution(
                        0.001, 0.5, log=True
                    ),
                },
                user_attrs={"candidate": {"family": "prophet", "k": k}},
            )
        )


def test_a_series_keeps_one_state_row_and_its_newest_trials_whatever_the_waves(
    tmp_path: Path,
) -> None:
    table = StudyTable(tmp_path, 2, keep=5)
    first = table.open("s", cold=False)
    assert (first.serial, first.warm.params, first.study().trials) == (0, None, [])
    trials(first.study(), 4)
    table.save(first, 1, (Params(0.2).as_dict(), INIT, {"family": "prophet"}))
    assert table.rows("s") == (1, 4)

    for wave in range(2, 6):
        again = table.open("s", cold=False)
        assert again.serial == wave - 1
        assert again.warm.params == Params(0.2) and again.warm.stan_init == INIT
        trials(again.study(), 3, start=10.0 * wave)
        table.save(again, wave)  # a fallback's save: the tuned wave's warm state stays
        assert table.rows("s") == (1, 5)  # bounded: the oldest trials go

    last = table.open("s", cold=False)
    assert [t.value for t in last.study().trials] == [41.0, 42.0, 50.0, 51.0, 52.0]
    assert last.study().trials[-1].user_attrs == {"candidate": {"family": "prophet", "k": 2}}
    assert last.warm.choice == {"family": "prophet"} and last.serial == 5
    # One file per shard (with its WAL beside it), not one per series.
    shard = f"studies-{table.shard('s'):03d}.sqlite"
    assert {p.name.split("-wal")[0].split("-shm")[0] for p in tmp_path.iterdir()} == {shard}


def test_a_cold_start_drops_the_trials_and_warm_state_and_keeps_the_serial(
    tmp_path: Path,
) -> None:
    table = StudyTable(tmp_path, 1, keep=5)
    study = table.open("s", cold=False)
    trials(study.study(), 3)
    table.save(study, 7, (Params(0.2).as_dict(), INIT, None))

    cold = table.open("s", cold=True)
    assert (cold.serial, cold.warm.params, cold.study().trials) == (7, None, [])
    assert table.rows("s") == (1, 0)  # a cold attempt that fails later keeps the serial
    again = table.open("s", cold=False)
    assert (again.serial, again.warm.params) == (7, None)


def test_a_study_of_the_journal_of_before_is_read_once_and_moved_at_its_save(
    tmp_path: Path,
) -> None:
    ref = StudyRef(tmp_path, 2)
    old = open_study(ref, "s", cold=True)
    trials(old, 8)
    save_warm_state(old, Params(0.3).as_dict(), INIT, {"family": "prophet"}, serial=9)
    table = StudyTable(tmp_path, 2, keep=5)

    moved = table.open("s", cold=False, legacy=legacy_study(ref))
    assert (moved.serial, moved.warm.params) == (9, Params(0.3))
    assert [t.value for t in moved.study().trials] == [3.0, 4.0, 5.0, 6.0, 7.0]
    table.save(moved, 10)
    assert table.rows("s") == (1, 5)
    assert table.open("s", cold=False).warm.params == Params(0.3)
    # A series the journal never had: nothing read, no journal created.
    assert table.open("new", cold=False, legacy=legacy_study(ref)).serial == 0


def test_a_locked_study_file_is_an_outage_not_the_series_failure(tmp_path: Path) -> None:
    import sqlite3

    table = StudyTable(tmp_path, 1, keep=5, wait=0.2)
    table.save(table.open("s", cold=False), 1)
    holder = sqlite3.connect(tmp_path / "studies-000.sqlite")
    holder.execute("BEGIN EXCLUSIVE")  # another process mid-write, for longer than the wait
    try:
        with pytest.raises(InfrastructureError, match="retried until it answers"):
            table.save(table.open("s", cold=False), 2)
    finally:
        holder.rollback()
        holder.close()
    table.save(table.open("s", cold=False), 2)
    assert table.open("s", cold=False).serial == 2
