"""The Optuna storage edge on a real journal file: what opening and saving write."""

from pathlib import Path

from retrain.prophet.fit import Params
from retrain.stores.studies import (
    StudyRef,
    open_study,
    save_warm_state,
    saved_serial,
    warm_state,
)

INIT = {"k": 0.1, "m": 0.5, "sigma_obs": 0.2, "delta": [0.0] * 3, "beta": [0.0] * 4}


def journal_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("studies-*.log"))


def test_reopening_a_study_writes_nothing(tmp_path: Path) -> None:
    ref = StudyRef(tmp_path, 1)
    study = open_study(ref, "s", cold=True)
    study.enqueue_trial(Params().as_dict())
    before = journal_size(tmp_path)

    again = open_study(ref, "s", cold=False)

    assert journal_size(tmp_path) == before
    assert again._study_id == study._study_id


def test_a_missing_study_is_created_warm_or_cold(tmp_path: Path) -> None:
    ref = StudyRef(tmp_path, 1)
    assert open_study(ref, "new", cold=False).trials == []
    assert warm_state(open_study(ref, "new", cold=False)).params is None


def test_warm_state_is_one_write_and_round_trips(tmp_path: Path) -> None:
    ref = StudyRef(tmp_path, 1)
    study = open_study(ref, "s", cold=True)
    params = Params(0.2, 3.0, "multiplicative")
    before = journal_size(tmp_path)
    save_warm_state(study, params.as_dict(), INIT)
    lines = (tmp_path / "studies-000.log").read_text().splitlines()

    assert journal_size(tmp_path) > before
    assert sum("shelfcast" in line for line in lines) == 1
    state = warm_state(open_study(ref, "s", cold=False))
    assert state.params == params and state.stan_init == INIT


def test_the_serial_rides_with_the_warm_state(tmp_path: Path) -> None:
    """What the study table reads of a series' study of before (its serial and warm state,
    saved in one write); the table keeps a serial through a cold start itself."""
    ref = StudyRef(tmp_path, 1)
    study = open_study(ref, "s", cold=False)
    assert saved_serial(study) == 0
    before = journal_size(tmp_path)
    save_warm_state(study, Params(0.2).as_dict(), INIT, {"family": "ets"}, serial=5)
    lines = (tmp_path / "studies-000.log").read_text().splitlines()
    assert journal_size(tmp_path) > before and sum("shelfcast" in line for line in lines) == 1

    again = open_study(ref, "s", cold=False)
    assert saved_serial(again) == 5
    assert warm_state(again).params == Params(0.2) and warm_state(again).choice == {"family": "ets"}
    assert saved_serial(open_study(ref, "s", cold=True)) == 0


def test_warm_state_saved_as_two_attributes_is_still_read(tmp_path: Path) -> None:
    study = open_study(StudyRef(tmp_path, 1), "s", cold=True)
    study.set_user_attr("shelfcast_params", Params(0.3).as_dict())
    study.set_user_attr("shelfcast_stan_init", INIT)

    state = warm_state(study)

    assert state.params == Params(0.3) and state.stan_init == INIT


def test_a_task_spec_shows_no_store_url_in_its_repr(tmp_path: Path) -> None:
    from shelfcast.retrain_config import task_spec
    from shelfcast.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path,
        optuna_storage="postgresql://optuna:s3cr/et@db:5432/optuna",
        mlflow_tracking_uri="https://user:t0k/en@mlflow.example:5000",
    )
    spec = task_spec(settings)
    assert "s3cr/et" not in repr(spec) and "t0k/en" not in repr(spec)
    assert spec.optuna_url is not None and "s3cr/et" in spec.optuna_url


def test_a_failed_task_error_keeps_no_store_credentials(tmp_path: Path) -> None:
    from retrain.cluster.coordinator import Coordinator
    from shelfcast.retrain_config import retrain_config
    from shelfcast.settings import load_settings

    settings = load_settings(
        data_dir=tmp_path,
        optuna_storage="postgresql://optuna:s3cr/et@db:5432/optuna",
        mlflow_tracking_uri="https://user:t0k/en@mlflow.example:5000",
    )
    coordinator = Coordinator(retrain_config(settings).coordinator)
    # What a nested driver error looks like: the URL whole, and the password on its own.
    error = (
        "OperationalError: could not connect to postgresql://optuna:s3cr/et@db:5432/optuna "
        "(password 's3cr/et' refused); MlflowException: https://user:t0k/en@mlflow.example:5000"
    )
    text = coordinator.sinks.redacted(error)
    assert "s3cr/et" not in text and "t0k/en" not in text
    assert "db:5432/optuna" in text and "mlflow.example:5000" in text


def test_a_writer_killed_holding_the_journal_lock_holds_no_one_up(tmp_path: Path) -> None:
    """Ray's force cancel of a hung task (or the OOM killer) may strike while it writes its
    journal: the next writer goes on at once, where Optuna's default lock (a symlink left
    behind) made every writer of that journal wait out a 30 s grace period."""
    import os
    import signal
    import subprocess
    import sys
    import time

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from retrain.stores.studies import StudyRef\n"
            "storage = StudyRef(Path(sys.argv[1]), 1).storage('s')\n"
            "storage._backend._lock.acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
    began = time.monotonic()
    study = open_study(StudyRef(tmp_path, 1), "s", cold=False)  # creating it writes
    save_warm_state(study, Params().as_dict(), INIT)
    assert time.monotonic() - began < 20  # not the 30 s grace wait
    assert warm_state(open_study(StudyRef(tmp_path, 1), "s", cold=False)).params is not None
