"""Whether a store's failure is the store being away (an outage that passes), not a refusal of
what was asked: the stores translate the first into :class:`~retrain.errors.InfrastructureError`.

Read from the exception and its causes, by type and code, without importing the stores'
libraries: a connection refused or reset, a timeout, a database that is down or locked
(SQLAlchemy's operational errors: MLflow's and Optuna's databases), MLflow's "server error",
"unavailable" and "too many requests" answers. A missing file, a value refused, a missing
table version, a SQLite file whose tables are broken are not outages: retrying them changes
nothing.
"""

__all__ = ["transient"]

# SQLAlchemy's errors of a database that cannot be reached or answered (by name: importing
# SQLAlchemy costs ~0.3 s in a process that may not use it).
_SQL_OUTAGES = frozenset(
    {"OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"}
)
# MLflow's error codes of a tracking server that is down, failing or overloaded (its HTTP
# client raises INTERNAL_ERROR for a connection refused or reset after its own retries).
_MLFLOW_OUTAGES = frozenset(
    {
        "INTERNAL_ERROR",
        "TEMPORARILY_UNAVAILABLE",
        "IO_ERROR",
        "SERVICE_UNDER_MAINTENANCE",
        "WORKSPACE_TEMPORARILY_UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "REQUEST_LIMIT_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "COULD_NOT_ACQUIRE_LOCK",
    }
)
# OSErrors that say the thing is not there or not allowed: no outage.
_NOT_OUTAGES = (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError)


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is an outage of a store."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current)
        raised = getattr(current, "orig", current)  # SQLAlchemy's wraps the driver's
        if _sqlite_error(raised):
            return _sqlite_outage(str(raised))
        if kind.__module__.startswith("sqlalchemy") and any(
            c.__name__ in _SQL_OUTAGES for c in kind.__mro__
        ):
            return True
        if isinstance(current, OSError) and not isinstance(current, _NOT_OUTAGES):
            return True
        code = getattr(current, "error_code", None)
        if isinstance(code, str) and code != "INTERNAL_ERROR":
            return code in _MLFLOW_OUTAGES  # MLflow's own answer: it says what happened
        if code == "INTERNAL_ERROR" and current.__cause__ is None and current.__context__ is None:
            return True  # a server error, or its client giving up on a connection
        current = current.__cause__ or current.__context__
    return False


# SQLite reports a locked or unreachable file and a broken schema alike as OperationalError:
# only the first passes (a store left half-built by a killed process never did).
_SQLITE_OUTAGES = ("locked", "busy", "unable to open", "disk i/o error", "disk is full")


def _sqlite_error(exc: object) -> bool:
    kind = type(exc)
    return kind.__module__ == "sqlite3" and kind.__name__ == "OperationalError"


def _sqlite_outage(message: str) -> bool:
    lowered = message.lower()
    return any(sign in lowered for sign in _SQLITE_OUTAGES)
