"""The thresholds file ops edit with ``shelfcast thresholds``, with its audit trail.

``<data_dir>/thresholds.json`` holds the current values (written atomically);
``<data_dir>/thresholds-audit.jsonl`` gets one line per change: time, who, key, old, new.
The service reads the file afresh every micro-batch; a file that no longer validates (edited
by hand) is reported and the last good values stay in force.
"""

import getpass
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streaming.errors import StreamingError
from streaming.trigger import Thresholds

__all__ = ["ThresholdStore"]

log = logging.getLogger("shelfcast.thresholds")


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
        self._last_good = Thresholds()

    def load(self) -> Thresholds:
        """The thresholds in force now (defaults when never set)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._last_good = Thresholds()
            return self._last_good
        try:
            self._last_good = Thresholds.model_validate_json(raw)
        except ValidationError as exc:
            log.error(
                "%s is not valid (%s); keeping the last good thresholds. "
                "Fix it with 'shelfcast thresholds set' or 'reset'.",
                self.path,
                _problems(exc),
            )
        return self._last_good

    def set(self, changes: dict[str, str], who: str | None = None) -> Thresholds:
        """Apply ``KEY=VALUE`` changes (strings as typed); all validate or none apply."""
        current = self.load()
        values: dict[str, Any] = current.model_dump()
        for key, text in changes.items():
            if key not in Thresholds.model_fields:
                known = ", ".join(Thresholds.model_fields)
                raise StreamingError(f"Unknown threshold {key!r}. Known: {known}.")
            values[key] = _parse(key, text)
        try:
            new = Thresholds.model_validate(values)
        except ValidationError as exc:
            raise StreamingError(
                f"Refused, nothing changed: {_problems(exc)}. "
                "See 'shelfcast thresholds show' for the current values."
            ) from exc
        self._write(current, new, who)
        return new

    def reset(self, who: str | None = None) -> Thresholds:
        """Back to the defaults (recorded in the audit trail like any change)."""
        current = self.load()
        new = Thresholds()
        self._write(current, new, who)
        return new

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest audit entries, oldest first."""
        if not self.audit_path.is_file():
            return []
        lines = self.audit_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines[-limit:] if line.strip()]

    def _write(self, old: Thresholds, new: Thresholds, who: str | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(new.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, self.path)
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
