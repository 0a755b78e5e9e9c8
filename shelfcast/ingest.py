"""``shelfcast ingest``: the topics created, the ingest's config built from the settings, the
streaming query run until asked to stop."""

import threading
from collections.abc import Callable

from shelfcast.ingest_config import ingest_config
from shelfcast.kafka import ensure_topics
from shelfcast.settings import Settings
from streaming.pipeline import IngestPipeline
from streaming.query import run_ingest as run_query

__all__ = ["run_ingest"]


def run_ingest(
    settings: Settings,
    stop: threading.Event,
    on_start: Callable[[IngestPipeline], None] | None = None,
) -> None:
    """Run the ingest in the foreground until ``stop`` is set or the query fails."""
    ensure_topics(settings)
    run_query(ingest_config(settings), stop, on_start)
