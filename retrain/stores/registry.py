"""The MLflow edge: one experiment, a run per wave with every series' row in a table, a run
and a model version per group retrain, and a run and a model version per series whose model is
its own.

A series the group model alone forecasts has no run or version of its own: its model is the
group's registry version, and its params and scores are a row of its wave's table
(``series/part-NNNNN.json``, in the format of MLflow's tables). Every series run is logged with one
``log_batch`` call (a call per metric costs ~20x more). The version that serves carries the
alias ``champion``.

Measured on the embedded SQLite store: a series costs six MLflow calls and ten commits, and
each commit's fsync cost ~2.5 ms. SQLite stores therefore run in WAL mode with
``synchronous=NORMAL`` (no fsync per commit: a crashed process loses nothing, a power cut may
lose the last commits, the file stays consistent), ~35 % less per series.
"""

import contextlib
import json
import os
import re
import string
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from contracts.series import series_key
from retrain.errors import InfrastructureError, RetrainError
from retrain.kernel.fallback import SeriesFit
from retrain.stores.sqlite_store import create_whole, without_fsync_per_commit
from retrain.stores.transient import transient

__all__ = [
    "CLIENT_RETRIES",
    "SERIES_TABLE",
    "GroupRecord",
    "Tracker",
    "group_model_name",
    "model_name",
    "redact",
]

CHAMPION = "champion"
_MODEL_FILE = "model.json"
_GROUP_FILE = "group_model.pkl"
_GROUP_PREFIX = "shelfcast-group."
# A wave's series rows, in parts: artifact ``series/part-00000.json`` and on.
SERIES_TABLE = "series"


def group_model_name(group: str) -> str:
    """The registered model of a group: ``shelfcast-group.<group>``, one version per retrain."""
    return _GROUP_PREFIX + _escape(group)


@dataclass(frozen=True)
class GroupRecord:
    """A group model as the registry keeps it: enough to load it and to judge its age."""

    group: str
    version: int
    source: str  # the artifact folder holding the model file
    through: date  # the last day it learned from
    trained_at: float  # epoch seconds
    series: int
    rows: int
    score: float | None  # pooled MAE on its validation folds

    @property
    def model_uri(self) -> str:
        return f"{self.source}/{_GROUP_FILE}"


def model_name(store_id: str, item_id: str) -> str:
    """The registered model of a series: ``shelfcast.<store>.<item>``, one name per series.

    Letters, digits, ``_`` and ``-`` stay as they are (``S1|I1`` -> ``shelfcast.S1.I1``, as
    before); any other character, ``.`` and ``%`` included, becomes ``%XX`` per UTF-8 byte.
    Replacing them all with ``_`` gave ``a.b|c`` and ``a|b.c``, or ``A B`` and ``A_B``, one
    model, and the "last good" fallback could serve another series' model.
    """
    return f"shelfcast.{_escape(store_id)}.{_escape(item_id)}"


def _escape(part: str) -> str:
    return "".join(
        char if char in _PLAIN else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in part
    )


_PLAIN = frozenset(string.ascii_letters + string.digits + "_-")


class Tracker:
    """MLflow runs and registry for Shelfcast."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        artifact_location: str | None = None,
        create: bool = True,
        retries: int | None = None,
    ) -> None:
        """``create=False`` for readers: they must never create the experiment (and with it
        a default artifact location in whatever folder they run in). ``retries``: how often
        a tracking server's failing call is retried before it counts as an outage (None:
        MLflow's own variable if the environment sets it, else :data:`CLIENT_RETRIES`). MLflow
        reads it from the environment per call: it holds for every tracker of the process."""
        import mlflow
        from mlflow import MlflowClient

        self._mlflow = mlflow
        self.uri = uri
        self.experiment = experiment
        try:
            if uri.startswith("sqlite:"):
                without_fsync_per_commit()
                create_whole(uri)
            else:
                _bound_client_retries(retries)
            self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None and not create:
                self.experiment_id = ""
            elif found is None:
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=artifact_location
                )
            else:
                self.experiment_id = found.experiment_id
        except Exception as exc:
            raise _failure(
                f"Cannot use MLflow at {_safe(uri)}: {redact(str(exc), uri)}.",
                exc,
                "Start the tracking server or fix SHELFCAST_MLFLOW_TRACKING_URI.",
            ) from exc
        self._registered: set[str] = set()

    @property
    def display_uri(self) -> str:
        """The tracking URI without credentials, for messages."""
        return _safe(self.uri)

    def _experiment_id(self) -> str:
        """A reader made before the experiment existed looks it up again."""
        if not self.experiment_id:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise RetrainError(
                    f"No MLflow experiment {self.experiment!r} at {self.display_uri}: the "
                    "coordinator creates it when it starts. Is the service up ('shelfcast up')?"
                )
            self.experiment_id = found.experiment_id
        return str(self.experiment_id)

    def start_wave(self, wave_id: str, tags: dict[str, str]) -> str:
        try:
            run = self.client.create_run(
                self._experiment_id(),
                run_name=f"wave-{wave_id}",
                tags={"shelfcast.kind": "wave", "shelfcast.wave": wave_id, **tags},
            )
        except RetrainError:
            raise
        except Exception as exc:
            raise self._failed(f"Starting the run of wave {wave_id}", exc) from exc
        return str(run.info.run_id)

    def finish_wave(self, run_id: str, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        try:
            self.client.log_batch(
                run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
            )
            self.client.set_terminated(run_id, "FINISHED")
        except Exception as exc:
            raise self._failed(f"Finishing the wave run {run_id}", exc) from exc

    def log_series_table(self, run_id: str, rows: list[dict[str, Any]], part: str) -> str:
        """Store ``rows`` (one per series) as part ``part`` of the run's series table, in the
        format of MLflow's tables (pandas' ``split``); return its artifact path."""
        columns = sorted({column for row in rows for column in row})
        table = {"columns": columns, "data": [[row.get(c) for c in columns] for row in rows]}
        name = f"{part}.json"
        try:
            artifact_uri = str(self.client.get_run(run_id).info.artifact_uri)
            self._upload(artifact_uri, SERIES_TABLE, name, json.dumps(table).encode())
        except Exception as exc:
            raise self._failed(f"Storing the series table of run {run_id}", exc) from exc
        return f"{SERIES_TABLE}/{name}"

    def series_table(self, run_id: str) -> list[dict[str, Any]]:
        """Every row of a wave run's series table, part by part."""
        rows: list[dict[str, Any]] = []
        try:
            parts = sorted(
                f.path for f in self.client.list_artifacts(run_id, SERIES_TABLE) if not f.is_dir
            )
            with tempfile.TemporaryDirectory(prefix="shelfcast-table-") as tmp:
                for part in parts:
                    local = self.client.download_artifacts(run_id, part, tmp)
                    table = json.loads(Path(local).read_text(encoding="utf-8"))
                    rows += [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
        except Exception as exc:
            raise self._failed(f"Reading the series table of run {run_id}", exc) from exc
        return rows

    def champion_version(self, store_id: str, item_id: str) -> int:
        """The registry version of the series' own champion, 0 if it has none."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(model_name(store_id, item_id), CHAMPION)
        except MlflowException as exc:
            # No such model, or no champion alias on it; anything else is not "none".
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return 0
            raise self._failed(f"Reading the champion of {store_id}|{item_id}", exc) from exc
        return int(found.version)

    def _failed(self, doing: str, exc: Exception, advice: str = "") -> RetrainError:
        """``exc`` of MLflow as our error: an outage (retried until MLflow answers) or not."""
        return _failure(
            f"{doing} in MLflow at {self.display_uri} failed: {redact(str(exc), self.uri)}.",
            exc,
            advice,
        )

    def record_series(
        self,
        parent_run_id: str | None,
        store_id: str,
        item_id: str,
        fit: SeriesFit,
        extra_params: dict[str, Any],
    ) -> tuple[str, int]:
        """Log the series' run and register its model as champion; return (run id, version).

        A run that fails part-way is marked ``FAILED``."""
        name = model_name(store_id, item_id)
        tags = {"shelfcast.kind": "series", "shelfcast.series": series_key(store_id, item_id)}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run_id: str | None = None
        try:
            run = self.client.create_run(self._experiment_id(), run_name=name, tags=tags)
            run_id = str(run.info.run_id)
            version = self._log_series(run_id, str(run.info.artifact_uri), name, fit, extra_params)
        except Exception as exc:
            if run_id is not None:
                with contextlib.suppress(Exception):  # the first error is the one to report
                    self.client.set_terminated(run_id, "FAILED")
            if isinstance(exc, RetrainError):
                raise
            raise self._failed(
                f"Recording {store_id}|{item_id}",
                exc,
                "The series is retried; check that the tracking store is reachable.",
            ) from exc
        return run_id, version

    def _log_series(
        self,
        run_id: str,
        artifact_uri: str,
        name: str,
        fit: SeriesFit,
        extra_params: dict[str, Any],
    ) -> int:
        from mlflow.entities import Metric, Param

        params = {
            "method": fit.method,
            "warm": fit.warm,
            "data_through": fit.data_through.isoformat(),
            # Whatever served (fallbacks too): the family, and the runner-up on the folds.
            "family": fit.family,
            "runner_up_family": fit.runner_up,
            **(fit.params or {}),
            **extra_params,
        }
        metrics = {
            "trials": fit.trials,
            "fits": fit.fits,
            "fit_seconds": fit.fit_seconds,
            **fit.metrics,
        }
        if fit.validation_mae is not None:
            metrics["validation_mae"] = fit.validation_mae
        if fit.validation_mase is not None:
            metrics["validation_mase"] = fit.validation_mase
        if fit.runner_up_mae is not None:
            metrics["runner_up_validation_mae"] = fit.runner_up_mae
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        self._upload(artifact_uri, "model", _MODEL_FILE, fit.model_json.encode())
        self._ensure_registered(name)
        version = self.client.create_model_version(
            name, source=f"{artifact_uri}/model", run_id=run_id
        )
        self._set_champion(name, str(version.version))
        self.client.set_terminated(run_id, "FINISHED")
        return int(version.version)

    def record_group(
        self,
        group: str,
        model_bytes: bytes,
        params: dict[str, Any],
        metrics: dict[str, float],
        through: date,
        series: int,
        rows: int,
        score: float | None,
    ) -> GroupRecord:
        """Log one group retrain (a run, its model file, a registry version as champion)."""
        from mlflow.entities import Metric, Param

        name = group_model_name(group)
        run_id: str | None = None
        try:
            run = self.client.create_run(
                self._experiment_id(),
                run_name=name,
                tags={"shelfcast.kind": "group", "shelfcast.group": group},
            )
            run_id = str(run.info.run_id)
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)) for k, v in params.items()],
            )
            self._upload(str(run.info.artifact_uri), "model", _GROUP_FILE, model_bytes)
            self._ensure_registered(name)
            trained_at = time.time()
            tags = {
                "shelfcast.group": group,
                "through": through.isoformat(),
                "trained_at": repr(trained_at),
                "series": str(series),
                "rows": str(rows),
                "score": "" if score is None else repr(score),
            }
            source = f"{run.info.artifact_uri}/model"
            version = self.client.create_model_version(
                name, source=source, run_id=run_id, tags=tags
            )
            self._set_champion(name, str(version.version))
            self.client.set_terminated(run_id, "FINISHED")
        except Exception as exc:
            if run_id is not None:
                with contextlib.suppress(Exception):
                    self.client.set_terminated(run_id, "FAILED")
            raise self._failed(
                f"Recording group model {group!r}",
                exc,
                "The group is retrained later; its series use their own models meanwhile.",
            ) from exc
        return GroupRecord(
            group, int(version.version), source, through, trained_at, series, rows, score
        )

    def group_champions(self) -> dict[str, GroupRecord]:
        """Every group's serving model (after a coordinator restart)."""
        from mlflow.exceptions import MlflowException

        out: dict[str, GroupRecord] = {}
        try:
            models = self.client.search_registered_models(
                filter_string=f"name LIKE '{_GROUP_PREFIX}%'"
            )
            for model in models:
                try:
                    found = self.client.get_model_version_by_alias(model.name, CHAMPION)
                except MlflowException:
                    continue
                tags = found.tags or {}
                group = tags.get("shelfcast.group")
                if not group:
                    continue
                score = tags.get("score") or ""
                out[group] = GroupRecord(
                    group,
                    int(found.version),
                    str(found.source),
                    date.fromisoformat(tags["through"]),
                    float(tags.get("trained_at", "0")),
                    int(tags.get("series", "0")),
                    int(tags.get("rows", "0")),
                    float(score) if score else None,
                )
        except (MlflowException, KeyError, ValueError, OSError) as exc:
            raise self._failed("Listing the group models", exc) from exc
        return out

    def group_model_bytes(self, record: GroupRecord) -> bytes:
        """The model file of a group version."""
        try:
            with tempfile.TemporaryDirectory(prefix="shelfcast-group-") as tmp:
                local = self._mlflow.artifacts.download_artifacts(
                    artifact_uri=record.model_uri, dst_path=tmp, tracking_uri=self.uri
                )
                return Path(local).read_bytes()
        except Exception as exc:
            raise self._failed(
                f"Reading group model {record.group} v{record.version}", exc
            ) from exc

    def _set_champion(self, name: str, version: str) -> None:
        """``MlflowClient.set_registered_model_alias`` first checks that the model is not a
        prompt, loading it with every version it ever had: measured on SQLite, the call took
        6 ms at 10 versions and 15 ms at 1,000, growing with every wave. These models are
        Shelfcast's own, so the registry client is called directly where MLflow has one."""
        registry = getattr(self.client, "_get_registry_client", None)
        if registry is None:
            self.client.set_registered_model_alias(name, CHAMPION, version)
        else:
            registry().set_registered_model_alias(name, CHAMPION, version)

    def champion_json(self, store_id: str, item_id: str) -> str | None:
        """The serving model's JSON, or None when the series has none (or it is not Prophet)."""
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(
                model_name(store_id, item_id), CHAMPION
            )
        except MlflowException as exc:
            if transient(exc):  # MLflow away is not "no champion"
                raise self._failed(f"Reading the champion of {store_id}|{item_id}", exc) from exc
            return None
        with tempfile.TemporaryDirectory(prefix="shelfcast-model-") as tmp:
            local = self._mlflow.artifacts.download_artifacts(
                artifact_uri=f"{version.source}/{_MODEL_FILE}", dst_path=tmp, tracking_uri=self.uri
            )
            text = Path(local).read_text(encoding="utf-8")
        return None if '"kind": "seasonal_naive"' in text else text

    def _upload(self, artifact_uri: str, folder: str, name: str, data: bytes) -> None:
        """``data`` as ``folder/name``, straight to the run's artifact store (``log_text``
        would first look the run up again)."""
        with tempfile.TemporaryDirectory(prefix="shelfcast-artifact-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            self.artifacts(artifact_uri).log_artifact(str(path), folder)

    def artifacts(self, artifact_uri: str) -> Any:
        """The artifact repository at ``artifact_uri``, reached through this tracking URI.

        A tracking server's served artifacts (``mlflow-artifacts:/...``) are resolved against
        a tracking URI: without it MLflow takes the process-wide one (``MLFLOW_TRACKING_URI``,
        else ``./mlruns``/SQLite), and every upload to the server failed."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(artifact_uri, tracking_uri=self.uri)

    def _ensure_registered(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        if name in self._registered:
            return
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        self._registered.add(name)


def _failure(text: str, exc: BaseException, advice: str) -> RetrainError:
    if transient(exc):
        return InfrastructureError(
            f"{text} MLflow is unreachable or failing; the work is retried until it answers.",
            "MLflow",
        )
    return RetrainError(f"{text} {advice}".rstrip())


# MLflow's HTTP client retries a refused or failing call 7 times over ~4 min by default. A
# retrain blocked that long holds its worker, and the outage shows nowhere: its series are
# "running". Shelfcast retries an MLflow outage itself, listed in the status
# (retrain.cluster.outages), so the client only rides out blips: 3 retries, ~12 s.
CLIENT_RETRIES = 3
_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"


def _bound_client_retries(retries: int | None) -> None:
    """MLflow's client retries a failing call ``retries`` times (None: as the environment
    says, else :data:`CLIENT_RETRIES`), 2 s, 4 s, 8 s... apart. MLflow reads them per call,
    from the environment of the process."""
    if retries is None:
        os.environ.setdefault(_RETRIES, str(CLIENT_RETRIES))
    else:
        os.environ[_RETRIES] = str(retries)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "2")


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:password|passwd|pwd|pass|secret|token|access_token|api_key|apikey)=)([^&;]*)"
)


def _userinfo(uri: str) -> tuple[int, int] | None:
    """Where the user-info of ``uri`` is (start, end), if it has one."""
    scheme = _SCHEME.match(uri)
    if scheme is None:
        return None
    # Secret query values may hold "@" too: look for the user-info without them.
    rest = _SECRET_PARAM.sub(lambda m: m.group(1) + "x" * len(m.group(2)), uri[scheme.end() :])
    # The last "@" ends the user-info: a password may hold "/", "@", ":" or "?" unencoded.
    # Only a URI with a host has one (``sqlite:////path`` does not).
    if not rest or rest.startswith("/") or "@" not in rest:
        return None
    return scheme.end(), scheme.end() + rest.rindex("@")


def _safe(uri: str) -> str:
    """The URI without credentials, for messages."""
    span = _userinfo(uri)
    if span is not None:
        uri = f"{uri[: span[0]]}***{uri[span[1] :]}"
    return _SECRET_PARAM.sub(r"\1***", uri)


def redact(text: str, uri: str) -> str:
    """``text`` (an error that may quote ``uri``, or parts of it) without its credentials."""
    found = [m.group(2) for m in _SECRET_PARAM.finditer(uri) if m.group(2)]
    span = _userinfo(uri)
    if span is not None:
        userinfo = uri[span[0] : span[1]]
        found += [userinfo, userinfo.partition(":")[2]]  # an error may quote the password alone
    text = text.replace(uri, _safe(uri))
    for secret in sorted({*found, *map(unquote, found)} - {""}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _SECRET_PARAM.sub(r"\1***", text)
