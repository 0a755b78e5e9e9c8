"""Model retention: all but the newest versions of each series' model go, with their files.

Every wave registers a new version of each series it retrained that has a model of its own
(not the group model's alone), with a model file of up to ~120 KB (Prophet's JSON carries
the two years of history it was fitted on): 500 such series retrained daily add ~22 GB a
year. ``shelfcast prune-models`` keeps the newest ``keep`` versions of
each model and its ``champion`` whatever its age; the runs, with their params and metrics,
stay. Run it by hand or from cron: it is not on the retrain path.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from retrain.errors import RetrainError
from retrain.stores.registry import CHAMPION, Tracker

__all__ = ["Pruned", "prune_models", "stale_versions"]

_PREFIX = "shelfcast."


@dataclass(frozen=True)
class Pruned:
    """What a pruning pass deleted (or would delete, on a dry run)."""

    models: int
    versions: int


def _paged(search: Callable[..., Any], **kwargs: Any) -> Iterator[Any]:
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def stale_versions(versions: list[Any], keep: int, champion: str | None) -> list[Any]:
    """The versions beyond the newest ``keep``, never the champion."""
    newest_first = sorted(versions, key=lambda v: int(v.version), reverse=True)
    return [v for v in newest_first[keep:] if str(v.version) != champion]


def prune_models(
    tracker: Tracker,
    keep: int,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Pruned:
    """Delete the stale versions of every Shelfcast model; ``progress`` hears each model."""
    if keep < 1:
        raise RetrainError(f"--keep must be at least 1 (got {keep}): the newest version serves.")
    client = tracker.client
    models = deleted = 0
    try:
        found = _paged(
            client.search_registered_models,
            filter_string=f"name LIKE '{_PREFIX}%'",
            max_results=1000,
        )
        # Listed in full first: the deletions below must not move the pages under the search.
        for name, aliases in [(m.name, dict(m.aliases)) for m in found]:
            versions = list(_paged(client.search_model_versions, filter_string=f"name='{name}'"))
            champion = aliases.get(CHAMPION)
            stale = stale_versions(versions, keep, None if champion is None else str(champion))
            if stale:
                models += 1
                deleted += len(stale)
            for version in [] if dry_run else stale:
                # The version first: the registry never points at a missing file.
                client.delete_model_version(name, version.version)
                run_artifacts, _, _ = str(version.source).rpartition("/model")
                if run_artifacts:
                    tracker.artifacts(run_artifacts).delete_artifacts("model")
            if progress is not None:
                progress(name)
    except Exception as exc:
        raise RetrainError(
            f"Pruning models in MLflow at {tracker.display_uri} stopped: {exc}. What was deleted "
            "stays deleted; run it again to finish."
        ) from exc
    return Pruned(models, deleted)
