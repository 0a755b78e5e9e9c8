"""A temporary folder of its own for each Spark driver process, inside a private root, and
the removal of those whose process is gone.

The driver's JVM keeps its copies of the jars (~40 MB a session), its shuffle and cached
blocks (local mode; Spark makes their folder readable by all under umask 022) and native
libraries in ``java.io.tmpdir``. A JVM killed with -9 or by the OOM killer leaves them
behind, in ``/tmp`` by default.

Each process holds a lock on its folder for as long as it lives; a folder whose lock can be
taken belongs to a process that is gone, whatever its pid now means (another container's
process, or a reused pid).
"""

import atexit
import fcntl
import functools
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import IO

__all__ = ["LOCK", "driver_temp_dir", "remove_leftovers"]

LOCK = ".lock"
# A folder still being made is hidden (a leading dot) until its lock is held; one older than
# this was left by a process killed while making it.
_STALE_SECONDS = 3600.0
_held: list[IO[str]] = []  # the locks this process holds: never closed while it lives

log = logging.getLogger(__name__)


@functools.cache
def driver_temp_dir(root: Path) -> Path | None:
    """This process's folder under ``root`` (made private), held locked until the process
    ends, and removed then; the folders of processes that are gone are removed first. None
    (the JVM's default folder, with a warning) where none can be made or locked."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_leftovers(root)
        name = uuid.uuid4().hex
        making = root / f".{name}"
        making.mkdir(mode=0o700)
        lock = (making / LOCK).open("w")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
        _held.append(lock)
        folder = making.rename(root / name)
    except OSError as exc:
        log.warning(
            "Spark's temporary files go to the JVM's default folder: none could be made and "
            "locked under %s (%s). Check that the data dir is writable and its file system "
            "supports file locks.",
            root,
            exc,
        )
        return None
    atexit.register(_remove_own, folder, os.getpid())
    return folder


def _remove_own(folder: Path, owner: int) -> None:
    if os.getpid() == owner:  # not a forked child that runs its parent's exit handlers
        shutil.rmtree(folder, ignore_errors=True)


def remove_leftovers(root: Path) -> list[Path]:
    """Remove the folders under ``root`` whose process is gone; the ones removed."""
    removed = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir() and _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _abandoned(folder: Path) -> bool:
    if folder.name.startswith("."):
        try:
            return time.time() - folder.stat().st_mtime > _STALE_SECONDS
        except FileNotFoundError:
            return False  # renamed in place a moment ago
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return True  # named only once locked: its lock file was removed with its process
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its process lives (or locks do not work here: keep it)
    finally:
        os.close(fd)  # releases the lock if taken
    return True
