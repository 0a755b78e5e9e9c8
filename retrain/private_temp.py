"""This user's folder in the node's temp directory, for what a node's processes share between
starts (the prewarm lock, the MLflow store template)."""

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["user_temp_folder"]


def user_temp_folder() -> Path | None:
    """``<tmp>/shelfcast-<uid>``, made if needed; None when it is not a folder only this user
    may enter (another user made it, or opened it up): then nothing is shared through it."""
    folder = Path(tempfile.gettempdir()) / f"shelfcast-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) & 0o077
    ):
        return None
    return folder
