"""The thresholds file ops edit with ``shelfcast thresholds``, with its audit trail.

``<data_dir>/thresholds.json`` holds the current values and their revision (a count of
changes; ``_revision``, and per key the revision that last changed it, ``_changed``);
``<data_dir>/thresholds-audit.jsonl`` gets one line per changed key: time, who (``by``: a
label the writer claims, by default its OS user), the writing process's OS ``uid`` and
``user`` (what no label or environment variable changes), key, old, new and the revision.

A change is written ahead: its audit lines first, then the new file (a temp file renamed
over the old one), each flushed to disk with its folder, so no change applies unrecorded.
A writer may name the revision it read (``expect_revision``): a key changed since then by
someone else is refused with a message, never silently overwritten.

The service reads the file afresh every micro-batch; a file that cannot be read or no longer
validates (edited by hand, a bad disk) is reported and counted, and the last good values stay
in force. Every change (an operator's ``set``, the service clearing ``force``) re-reads the
file under a lock, so two writers never lose each other's change.
"""

import fcntl
import json
import logging
import os
import pwd
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streaming.errors import StreamingError
from streaming.trigger import Thresholds

__all__ = ["ThresholdStore"]

log = logging.getLogger("shelfcast.thresholds")

_AUDIT_KEYS = frozenset({"at", "by", "key", "old", "new"})
_REVISION, _CHANGED = "_revision", "_changed"


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


class ThresholdStore:
    """Current thresholds and their history under one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "thresholds.json"
        self.audit_path = data_dir / "thresholds-audit.jsonl"
        self.lock_path = data_dir / "thresholds.lock"
        self._last_good = Thresholds()
        self._last_revision: tuple[int, dict[str, int]] = (0, {})
        self.failures = 0  # reads that kept the last good values (a metric)

    def load(self) -> Thresholds:
        """The thresholds in force now (defaults when never set); never raises."""
        return self._read()[0]

    @property
    def revision(self) -> int:
        """The revision of the thresholds in force (0: never changed); never raises."""
        return self._read()[1]

    def current(self) -> tuple[Thresholds, int]:
        """The thresholds in force and their revision, from one read (what a form shows and
        sends back); never raises."""
        values, revision, _changed = self._read()
        return values, revision

    def _read(self) -> tuple[Thresholds, int, dict[str, int]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._last_good, self._last_revision = Thresholds(), (0, {})
            return self._last_good, 0, {}
        except OSError as exc:
            return self._keep_last_good(f"cannot be read ({exc})")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return self._keep_last_good(f"is not JSON ({exc})")
        if not isinstance(data, dict):
            return self._keep_last_good("is not a JSON object")
        revision, changed = data.pop(_REVISION, 0), data.pop(_CHANGED, {})
        try:
            values = Thresholds.model_validate(data)
        except ValidationError as exc:
            return self._keep_last_good(f"is not valid ({_problems(exc)})")
        if not isinstance(revision, int) or not isinstance(changed, dict):
            return self._keep_last_good(f"has a bad {_REVISION} or {_CHANGED}")
        self._last_good = values
        self._last_revision = (revision, {str(k): int(v) for k, v in changed.items()})
        return values, *self._last_revision

    def _keep_last_good(self, problem: str) -> tuple[Thresholds, int, dict[str, int]]:
        self.failures += 1
        log.error(
            "%s %s; keeping the last good thresholds. "
            "Fix it with 'shelfcast thresholds set' or 'reset'.",
            self.path,
            problem,
        )
        return self._last_good, *self._last_revision

    def set(
        self, changes: dict[str, str], who: str | None = None, expect_revision: int | None = None
    ) -> Thresholds:
        """Apply ``KEY=VALUE`` changes (strings as typed); all validate or none apply.

        With ``expect_revision`` (the revision the writer read), a key changed after it is
        refused: the writer has not seen that value."""
        if not changes:
            raise StreamingError(
                "Nothing to set: give KEY=VALUE pairs, e.g. 'shelfcast thresholds set "
                "min_new_events=50'."
            )
        for key in changes:
            if key not in Thresholds.model_fields:
                known = ", ".join(Thresholds.model_fields)
                raise StreamingError(f"Unknown threshold {key!r}. Known: {known}.")
        with self._locked():
            current, revision, changed = self._read()
            self._check_revision(expect_revision, changes, revision, changed)
            values: dict[str, Any] = current.model_dump()
            values.update({key: _parse(key, text) for key, text in changes.items()})
            try:
                new = Thresholds.model_validate(values)
            except ValidationError as exc:
                raise StreamingError(
                    f"Refused, nothing changed: {_problems(exc)}. "
                    "See 'shelfcast thresholds show' for the current values."
                ) from exc
            self._write(current, new, who, revision, changed)
        return new

    def unforce(self, keys: Collection[str], who: str | None = None) -> Thresholds:
        """Take ``keys`` out of ``force`` (they were handed over), keeping whatever else was
        forced meanwhile."""
        with self._locked():
            current, revision, changed = self._read()
            left = tuple(k for k in current.force if k not in keys)
            if left == current.force:
                return current
            new = current.model_copy(update={"force": left})
            self._write(current, new, who, revision, changed)
        return new

    def reset(self, who: str | None = None, expect_revision: int | None = None) -> Thresholds:
        """Back to the defaults (recorded in the audit trail like any change); with
        ``expect_revision``, refused when any value changed after that revision."""
        with self._locked():
            current, revision, changed = self._read()
            self._check_revision(expect_revision, Thresholds.model_fields, revision, changed)
            new = Thresholds()
            self._write(current, new, who, revision, changed)
        return new

    def _check_revision(
        self,
        expected: int | None,
        keys: Collection[str],
        revision: int,
        changed: dict[str, int],
    ) -> None:
        if expected is None:
            return
        if expected > revision:
            raise StreamingError(
                f"Refused, nothing changed: you read revision {expected}, but the thresholds "
                f"are at revision {revision} (the file was replaced or reset by hand). Read "
                "them again ('shelfcast thresholds show', or reload the page) and apply again."
            )
        stale = sorted(k for k in keys if changed.get(k, 0) > expected)
        if stale:
            raise StreamingError(
                f"Refused, nothing changed: {', '.join(stale)} changed after revision "
                f"{expected}, which you read (now revision {revision}; see 'shelfcast "
                "thresholds history'). Read them again ('shelfcast thresholds show', or reload "
                "the page) and apply your change again."
            )

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest audit entries, oldest first; lines that do not read as one are skipped."""
        if not self.audit_path.is_file():
            return []
        entries, bad = [], 0
        for line in self.audit_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict) and _AUDIT_KEYS <= entry.keys():
                entries.append(entry)
            else:
                bad += 1
        if bad:
            log.warning("%s: %d lines are not audit entries; skipped", self.audit_path, bad)
        return entries[-limit:]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes (the service and an operator's command)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(
        self,
        old: Thresholds,
        new: Thresholds,
        who: str | None,
        revision: int,
        changed: dict[str, int],
    ) -> None:
        """The audit lines first, then the file; each on disk before the next step."""
        before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
        keys = [key for key in Thresholds.model_fields if before[key] != after[key]]
        revision += 1
        changed = {**changed, **dict.fromkeys(keys, revision)}
        uid = os.getuid()
        at, user = datetime.now(UTC).isoformat(), _user(uid)
        lines = [
            json.dumps(
                {"at": at, "by": who or user, "key": key, "old": before[key], "new": after[key]}
                | {"revision": revision, "uid": uid, "user": user}
            )
            + "\n"
            for key in keys
        ]
        with self.audit_path.open("a", encoding="utf-8") as audit:
            audit.write("".join(lines))
            audit.flush()
            os.fsync(audit.fileno())
        # A temp file of its own: a fixed name let two writers replace each other's half.
        fd, tmp = tempfile.mkstemp(prefix=".thresholds-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                document = {**after, _REVISION: revision, _CHANGED: changed}
                out.write(json.dumps(document, indent=2))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.path.parent)  # the rename, and a new audit file's entry
        self._last_good, self._last_revision = new, (revision, changed)


def _parse(key: str, text: str) -> Any:
    if key == "force":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if key == "drift_ratio" and text.strip().lower() in ("none", "off", ""):
        return None
    return text


def _user(uid: int) -> str:
    """The OS account of ``uid`` (not ``$USER``, which any process sets as it likes)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
