"""Class-data archives of a JVM: the option that maps or records one, and the runtime version
an archive is named by (an archive written by one Java is refused by another)."""

import os
import re
import shutil
from pathlib import Path

__all__ = ["class_archive_options", "java_runtime"]


def class_archive_options(archive: Path | None, record_to: Path | None = None) -> list[str]:
    """The JVM's class-data sharing option: record the classes it loads to ``record_to`` as it
    exits, else map ``archive`` when that file exists (a JVM that cannot use it logs one line
    and starts as before); none otherwise."""
    if record_to is not None:
        return [f"-XX:ArchiveClassesAtExit={record_to}"]
    if archive is not None and archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}"]
    return []


def java_runtime(java: str | None = None) -> str:
    """The runtime version of ``java`` (by default the one Spark starts: ``JAVA_HOME``'s, else
    the ``java`` on the PATH), from its ``release`` file: ``17.0.15+6-Debian-1deb12u1``;
    ``unknown`` without one."""
    if java is None:
        home = os.environ.get("JAVA_HOME")
        java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if java is None:
        return "unknown"
    try:
        release = (Path(java).resolve().parent.parent / "release").read_text()
    except OSError:
        return "unknown"
    for line in release.splitlines():
        key, _, value = line.partition("=")
        if key == "JAVA_RUNTIME_VERSION" and value.strip('"'):
            return re.sub(r"[^A-Za-z0-9._+-]", "_", value.strip('"'))
    return "unknown"
