"""Which failures of a retrain are outages (retried until the system returns, never counted
against the series) and which are the series' own (they count toward poison).

An outage is an :class:`~retrain.errors.InfrastructureError` (the stores translate MLflow's,
the Optuna storage's and Delta's outages into one where they enter; the coordinator raises one
for a task that stopped answering or only waited), or Ray losing what ran the task: its worker
or node, an object it needed. Anything else, a task's own exception above all, is the series'.
"""

from typing import Any

from retrain.errors import InfrastructureError

__all__ = ["error_text", "outage_of"]


def _ray_outages() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rx

    return (
        rx.WorkerCrashedError,  # its worker killed or crashed (not by its own exception)
        rx.NodeDiedError,
        rx.LocalRayletDiedError,
        rx.ObjectLostError,  # with OwnerDiedError, ObjectReconstructionFailedError, ...
        rx.ObjectFetchTimedOutError,
        rx.ObjectFreedError,
        rx.ObjectStoreFullError,
        rx.OutOfDiskError,
        rx.RaySystemError,
        rx.RpcError,
        rx.RuntimeEnvSetupError,
        rx.TaskUnschedulableError,
        rx.ActorDiedError,  # the coordinator's own handle, passed to the task, gone
        rx.ActorUnavailableError,
    )


def outage_of(exc: BaseException) -> str | None:
    """The system whose outage ``exc`` is (``MLflow``, ``Ray``, ...), or None: the series' own
    failure."""
    cause: Any = getattr(exc, "cause", None)  # a Ray task's error carries the task's exception
    for candidate in (exc, cause):
        if isinstance(candidate, InfrastructureError):
            return candidate.system or "infrastructure"
    if isinstance(exc, _ray_outages()):
        return "Ray"
    return None


def error_text(exc: BaseException) -> str:
    """An exception as one short line (a Ray task error as its cause)."""
    cause = getattr(exc, "cause", None) or exc
    text = f"{type(cause).__name__}: {cause}"
    return text if len(text) < 2000 else text[:2000] + "..."
