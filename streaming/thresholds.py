"""The thresholds file ops edit with ``shelfcast thresholds``, with its audit trail.

``<data_dir>/thresholds.json`` holds the current values (written atomically);
``<data_dir>/thresholds-audit.jsonl`` gets one line per change: time, who, key, old, new.
The service reads the file afresh every micro-batch; a file that cannot be read or no longer
validates (edited by hand, a bad disk) is reported and counted, and the last good values stay
in force. Every change (an operator's ``set``, the service clearing ``force``) re-reads the
file under a lock, so two writers never lose each other's change.
"""

import fcntl
import getpass
import json
import logging
import os
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
        self.failures = 0  # reads that kept the last good values (a metric)

    def load(self) -> Thresholds:
        """The thresholds in force now (defaults when never set); never raises."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._last_good = Thresholds()
            return self._last_good
        except OSError as exc:
            return self._keep_last_good(f"cannot be read ({exc})")
        try:
            self._last_good = Thresholds.model_validate_json(raw)
        except ValidationError as exc:
            return self._keep_last_good(f"is not valid ({_problems(exc)})")
        return self._last_good

    def _keep_last_good(self, problem: str) -> Thresholds:
        self.failures += 1
        log.error(
            "%s %s; keeping the last good thresholds. "
            "Fix it with 'shelfcast thresholds set' or 'reset'.",
            self.path,
            problem,
        )
        return self._last_good

    def set(self, changes: dict[str, str], who: str | None = None) -> Thresholds:
        """Apply ``KEY=VALUE`` changes (strings as typed); all validate or none apply."""
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
            current = self.load()
            values: dict[str, Any] = current.model_dump()
            values.update({key: _parse(key, text) for key, text in changes.items()})
            try:
                new = Thresholds.model_validate(values)
            except ValidationError as exc:
                raise StreamingError(
                    f"Refused, nothing changed: {_problems(exc)}. "
                    "See 'shelfcast thresholds show' for the current values."
                ) from exc
            self._write(current, new, who)
        return new

    def unforce(self, keys: Collection[str], who: str | None = None) -> Thresholds:
        """Take ``keys`` out of ``force`` (they were handed over), keeping whatever else was
        forced meanwhile."""
        with self._locked():
            current = self.load()
            left = tuple(k for k in current.force if k not in keys)
            if left == current.force:
                return current
            new = current.model_copy(update={"force": left})
            self._write(current, new, who)
        return new

    def reset(self, who: str | None = None) -> Thresholds:
        """Back to the defaults (recorded in the audit trail like any change)."""
        with self._locked():
            current = self.load()
            new = Thresholds()
            self._write(current, new, who)
        return new

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, old: Thresholds, new: Thresholds, who: str | None) -> None:
        # A temp file of its own: a fixed name let two writers replace each other's half.
        fd, tmp = tempfile.mkstemp(prefix=".thresholds-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(new.model_dump_json(indent=2))
            os.replace(tmp, self.path)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
        at = datetime.now(UTC).isoformat()
        actor = who or _user()
        before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
        with self.audit_path.open("a", encoding="utf-8") as audit:
            for key in Thresholds.model_fields:
                if before[key] != after[key]:
                    entry = {"at": at, "by": actor, "key": key, "old": before[key]}
                    audit.write(json.dumps({**entry, "new": after[key]}) + "\n")
        self._last_good = new


def _parse(key: str, text: str) -> Any:
    if key == "force":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if key == "drift_ratio" and text.strip().lower() in ("none", "off", ""):
        return None
    return text


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
