"""``python -m shelfcast.class_archive``: record the archive of Spark's driver classes that
every later Spark start of this environment maps (scripts/setup runs it once). It starts the
session the service starts, with its jars, from the settings (``SHELFCAST_*``)."""

import sys

from shelfcast.ingest_config import spark_config
from shelfcast.settings import load_settings
from streaming.spark import class_archive_path, record_class_archive


def main() -> int:
    path = class_archive_path()
    record_class_archive(spark_config(load_settings()), path)
    if not path.is_file():
        print(f"no class archive was written to {path}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
