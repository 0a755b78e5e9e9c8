"""``python -m shelfcast.class_archive``: record the class-data archives that every later JVM
start of this environment maps (scripts/setup runs it): Spark's driver classes, from the
session the service starts with its jars, and the embedded Kafka broker's, from a node that
serves a topic once. An archive already present is kept. Settings come from ``SHELFCAST_*``.
"""

import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from shelfcast.embedded import free_port, start_broker, stop_process
from shelfcast.ingest_config import spark_config
from shelfcast.jars import broker_classpath, java_binary
from shelfcast.kafka_broker import class_archive_path as broker_archive_path
from shelfcast.settings import Settings, load_settings
from streaming.spark import class_archive_path, record_class_archive


def remove_other_archives(path: Path) -> list[Path]:
    """Delete the archives beside ``path`` of the same kind (``spark-*``, ``kafka-*``) but of
    other versions, jars or Java (tens to ~155 MB each, never mapped again); return them."""
    kind = path.name.split("-", 1)[0]
    others = sorted(p for p in path.parent.glob(f"{kind}-*.jsa") if p != path)
    for other in others:
        other.unlink(missing_ok=True)
    return others


def record_broker_archive(settings: Settings, path: Path) -> None:
    """Start a broker on a scratch data dir, recording; have it create a topic and serve a
    produce and a fetch (the classes of a client's requests); stop it: its JVM writes what it
    loaded to ``path`` as it exits."""
    from confluent_kafka import Consumer, Producer

    from shelfcast.kafka import client_config, ensure_topics, producer_config

    with tempfile.TemporaryDirectory(prefix="shelfcast-broker-archive-") as scratch:
        node = settings.model_copy(
            update={"data_dir": Path(scratch), "bootstrap_servers": f"127.0.0.1:{free_port()}"}
        )
        proc = start_broker(node, record_archive=path)
        try:
            ensure_topics(node)
            producer = Producer(producer_config(node))
            producer.produce(node.topic_pos_sales, key=b"k", value=b"v")
            producer.flush(30)
            del producer  # closed now, not polling a stopped broker until collected
            consumer = Consumer(
                {**client_config(node), "group.id": "archive", "auto.offset.reset": "earliest"}
            )
            try:
                consumer.subscribe([node.topic_pos_sales])
                for _ in range(30):
                    if consumer.poll(1.0) is not None:
                        break
            finally:
                consumer.close()
        finally:
            # The JVM writes the archive on its way out (seconds): let it, before a SIGKILL.
            stop_process(proc.pid, timeout=60.0)


def _written(archive: Path) -> bool:
    return archive.is_file() and archive.stat().st_size > 0


def _recorded(kind: str, record: Callable[[Path], None], path: Path) -> bool:
    """Whether ``record`` wrote the ``kind`` archive: into a draft beside ``path``, moved into
    place whole, so that a JVM killed while writing leaves none that every later start would
    try to map."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.new")
    draft.unlink(missing_ok=True)
    try:
        record(draft)
    except Exception as exc:  # any failure: that JVM starts without an archive
        print(f"recording the {kind} class archive failed: {exc!r}", file=sys.stderr)
    if _written(draft):
        draft.replace(path)
        return True
    draft.unlink(missing_ok=True)
    print(f"no {kind} class archive was written to {path}", file=sys.stderr)
    return False


def main() -> int:
    settings = load_settings()
    recorders: dict[str, tuple[Path, Callable[[Path], None]]] = {
        # Spark's config (its jars) is resolved only when its archive is recorded.
        "spark": (
            class_archive_path(),
            lambda to: record_class_archive(spark_config(settings), to),
        ),
        "kafka": (
            broker_archive_path(java_binary(), broker_classpath(settings.jars_dir)),
            partial(record_broker_archive, settings),
        ),
    }
    said, missing = [], False
    for kind, (path, record) in recorders.items():  # one that fails leaves the other recorded
        if _written(path):
            said.append(f"{kind} present")
            continue
        remove_other_archives(path)
        if _recorded(kind, record, path):
            said.append(f"{kind} recorded")
        else:
            missing = True
            said.append(f"{kind} not recorded")
    print(", ".join(said))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
