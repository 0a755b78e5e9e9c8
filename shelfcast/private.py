"""Files only their owner reads: the data dir and the temporary folders of the stack.

The data dir holds sales history, forecasts, the MLflow store and the Kafka logs: it is made
with mode 0700 (and the processes started for it with umask 077), so other users of the
machine reach none of it, whatever mode the files under it get.
"""

import logging
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["PRIVATE_UMASK", "private_dir", "private_temp_dir"]

log = logging.getLogger("shelfcast.private")

PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Make ``path`` (and any missing parent) with mode 0700; an existing folder that lets
    other users in is kept as it is and reported with the chmod that closes it."""
    if not path.is_dir():
        old = os.umask(PRIVATE_UMASK)
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        finally:
            os.umask(old)
        path.chmod(0o700)  # mkdir's mode is masked; the folder itself is what matters
        return path
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and path.stat().st_uid == os.getuid():
        log.warning(
            "%s (mode %04o) lets other users of this machine read the sales history, "
            "forecasts and stores in it: run 'chmod 700 %s'.",
            path,
            mode,
            path,
        )
    return path


def private_temp_dir(prefix: str) -> Path:
    """A new folder only we may enter, with an unpredictable name (``mkdtemp``), under the
    system's temporary folder."""
    return Path(tempfile.mkdtemp(prefix=prefix))
