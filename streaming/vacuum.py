"""The shortest vacuum retention allowed: what a retrain may still read.

A retrain reads ``daily_sales`` at the version it was handed. A series waits on the queue
until a worker is free, is retried with backoff, and is handed a newer version only when it is
offered again (after ``busy_timeout_seconds``, 15 minutes by default). Vacuuming files younger
than that deletes them under the retrain: it fails, and after its retries the series is poison.
"""

import math

from streaming.errors import TableError

__all__ = ["MIN_VACUUM_RETENTION_HOURS", "check_vacuum_retention"]

MIN_VACUUM_RETENTION_HOURS = 1.0


def check_vacuum_retention(hours: float) -> None:
    """Refuse a retention shorter than a retrain may still read (or not a finite number)."""
    if not (math.isfinite(hours) and hours >= MIN_VACUUM_RETENTION_HOURS):
        raise TableError(
            f"A vacuum retention of {hours} hours is refused: retrains read daily_sales at the "
            "version they were handed, up to busy_timeout_seconds and their retries later, and "
            "a shorter retention deletes those files under them. Set "
            f"SHELFCAST_DELTA_VACUUM_RETENTION_HOURS to at least {MIN_VACUUM_RETENTION_HOURS:g} "
            "(default 24)."
        )
