"""``python -m shelfcast.class_archive``: record the archive of Spark's driver classes that
every later Spark start of this environment maps (scripts/setup runs it once). It starts the
session the service starts, with its jars, from the settings (``SHELFCAST_*``)."""

import sys
from pathlib import Path

from shelfcast.ingest_config import spark_config
from shelfcast.settings import load_settings
from streaming.spark import class_archive_path, record_class_archive


def remove_other_archives(path: Path) -> list[Path]:
    """Delete the archives beside ``path`` of other pyspark or Java versions (~155 MB each,
    never mapped again); return them."""
    others = sorted(p for p in path.parent.glob("spark-*.jsa") if p != path)
    for other in others:
        other.unlink(missing_ok=True)
    return others


def main() -> int:
    path = class_archive_path()
    remove_other_archives(path)
    record_class_archive(spark_config(load_settings()), path)
    if not path.is_file():
        print(f"no class archive was written to {path}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
