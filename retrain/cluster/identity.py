"""What a driver must agree on with the shared coordinator, as plain data.

The coordinator is one detached actor per Ray namespace and its configuration belongs to the
service. Another driver (``shelfcast retrain``, ``status``) that reads other tables or writes
to another MLflow store would, if it reconfigured it, point the service's retrains there; so
it is compared instead, and refused when it differs.
"""

import hashlib
from dataclasses import asdict
from typing import Any

from retrain.config import CoordinatorConfig

__all__ = ["differences", "retrain_identity"]

# May hold credentials: compared by hash, never shown.
_SECRET = frozenset({"spec.optuna_url", "spec.tracking_uri"})


def retrain_identity(config: CoordinatorConfig, shards: int) -> dict[str, str]:
    """Every retrain setting a coordinator of ``shards`` uses, flattened to ``name -> text``."""
    values = {
        "data_dir": config.data_dir,
        "bootstrap_servers": config.publish.bootstrap_servers,
        "topic_forecasts": config.publish.topic,
        # Which coordinator holds a series: every driver must split the queue the same way.
        "coordinator_shards": shards,
        "spec": asdict(config.task),
        "policy": asdict(config.policy),
    }
    out: dict[str, str] = {}
    _flatten("", values, out)
    for name in _SECRET & out.keys():
        out[name] = "sha256:" + hashlib.sha256(out[name].encode()).hexdigest()[:12]
    return out


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = str(value)


def differences(coordinator: dict[str, str], caller: dict[str, str]) -> list[str]:
    """The settings that differ, each as ``name (coordinator: X, yours: Y)``."""
    return [
        f"{name} (coordinator: {coordinator.get(name, '-')}, yours: {caller.get(name, '-')})"
        for name in sorted(coordinator.keys() | caller.keys())
        if coordinator.get(name) != caller.get(name)
    ]
