"""The Spark driver's temporary files live in a folder of its process inside the data dir, and
the folders of processes that are gone (killed with -9) are removed by the next driver."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streaming.config import SparkConfig
from streaming.spark import _driver_options
from streaming.spark_temp import LOCK, driver_temp_dir, remove_leftovers

HOLD = """
import sys, time
from pathlib import Path
from streaming.spark_temp import driver_temp_dir
print(driver_temp_dir(Path(sys.argv[1])), flush=True)
if sys.argv[2] == "stay":
    time.sleep(600)
"""

# A driver as the service starts one, which reports where its JVM keeps its temporary files.
DRIVER = """
import sys, time
from pathlib import Path
from shelfcast.ingest_config import spark_config
from shelfcast.settings import load_settings
from streaming.spark import spark_session

spark = spark_session(spark_config(load_settings(data_dir=Path(sys.argv[1]))))
spark.range(100).selectExpr("id % 3 AS k").groupBy("k").count().collect()
jvm = spark.sparkContext._jvm
conf = spark.sparkContext._jsc.sc().conf()
print(jvm.System.getProperty("java.io.tmpdir"), flush=True)
print(jvm.org.apache.spark.util.Utils.getLocalDir(conf), flush=True)
time.sleep(600)
"""


def _start(script: str, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline().strip() for _ in range(script.count("flush=True"))]
    assert all(lines), f"the process ended early ({proc.wait()})"
    return proc, lines


def test_a_folder_whose_process_is_gone_is_removed_and_a_living_ones_kept(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    living, (kept,) = _start(HOLD, str(root), "stay")
    killed, (gone,) = _start(HOLD, str(root), "stay")
    ended, (tidied,) = _start(HOLD, str(root), "exit")
    try:
        assert ended.wait(30) == 0
        assert not Path(tidied).exists(), "a process that ends removes its own folder"
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(30)
        (Path(gone) / "blockmgr-1").mkdir()  # what its JVM left
        making, stale = root / ".new", root / ".old"
        making.mkdir()
        stale.mkdir()
        os.utime(stale, (time.time() - 7200, time.time() - 7200))
        assert remove_leftovers(root) == [stale, Path(gone)]
        assert sorted(p.name for p in root.iterdir()) == sorted([".new", Path(kept).name])
        assert (Path(kept) / LOCK).exists()
    finally:
        os.kill(living.pid, signal.SIGKILL)
        living.wait(30)
    assert remove_leftovers(root) == [Path(kept)]


def test_the_driver_is_given_its_folder_only_when_a_root_is_set(tmp_path: Path) -> None:
    derby = f"-Dderby.system.home={tmp_path / 'derby'}"
    assert _driver_options(SparkConfig(derby_home=tmp_path / "derby")) == [derby]
    config = SparkConfig(derby_home=tmp_path / "derby", temp_root=tmp_path / "tmp")
    folder = driver_temp_dir(tmp_path / "tmp")
    assert _driver_options(config) == [derby, f"-Djava.io.tmpdir={folder}"]
    assert folder.parent == tmp_path / "tmp" and (folder / LOCK).exists()
    assert (tmp_path / "tmp").stat().st_mode & 0o077 == 0, "private to this user"


def test_without_a_folder_of_its_own_the_driver_keeps_the_jvms_default_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "data").write_text("a file where the data dir should be")
    config = SparkConfig(derby_home=tmp_path / "derby", temp_root=tmp_path / "data" / "tmp")
    assert _driver_options(config) == [f"-Dderby.system.home={tmp_path / 'derby'}"]
    assert "Check that the data dir is writable" in caplog.text


@pytest.mark.integration
def test_a_driver_killed_with_minus_nine_leaves_its_files_in_the_data_dir_until_the_next(
    tmp_path: Path,
) -> None:
    root = tmp_path / "spark" / "tmp"
    driver, (java_tmp, local_dir) = _start(DRIVER, str(tmp_path))
    try:
        (folder,) = [p for p in root.iterdir()]
        assert Path(java_tmp) == folder
        assert Path(local_dir).is_relative_to(folder), "its blocks and copies of the jars"
        assert list(folder.glob("spark-*/userFiles-*/*.jar")), "the session's jars, copied"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the Python driver and its JVM at once
        driver.wait(30)
    assert folder.is_dir(), "nothing of a process killed with -9 runs to remove it"
    assert remove_leftovers(root) == [folder]
    assert list(root.iterdir()) == []
