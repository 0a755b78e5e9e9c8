"""The embedded Apache Kafka: one KRaft node (broker and controller) on loopback.

Its storage lives in ``<data dir>/kafka``: formatted once by ``kafka.tools.StorageTool``, so
``shelfcast down`` then ``up`` keeps every topic and offset. The controller's port is chosen
once and kept in the node's properties (the quorum remembers its voter's endpoint).

With ``SHELFCAST_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT`` and a SCRAM mechanism the client
listener authenticates with SCRAM, and ``up`` creates the configured user through a second,
internal listener (loopback only, also used between broker and controller): the password
goes over the admin API, never into a file or a command line.
"""

import base64
import hashlib
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from shelfcast.errors import EmbeddedStackError
from streaming.java import class_archive_options, java_runtime

__all__ = [
    "KafkaNode",
    "class_archive_path",
    "format_command",
    "prepare_node",
    "server_command",
]

_SCRAM = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


@dataclass(frozen=True)
class KafkaNode:
    """Where one embedded node keeps its files, and how clients reach it."""

    root: Path
    host: str
    port: int
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None

    @property
    def properties(self) -> Path:
        """The node's ``server.properties``."""
        return self.root / "server.properties"

    @property
    def log_dir(self) -> Path:
        """Kafka's log directory (topics, offsets, the metadata log)."""
        return self.root / "logs"

    @property
    def formatted(self) -> bool:
        """True once ``StorageTool format`` wrote the storage's meta.properties."""
        return (self.log_dir / "meta.properties").is_file()

    @property
    def scram(self) -> bool:
        """Whether the client listener authenticates with SCRAM."""
        return self.security_protocol == "SASL_PLAINTEXT" and self.sasl_mechanism in _SCRAM


def _read_port(properties: Path, key: str) -> int | None:
    if not properties.is_file():
        return None
    for line in properties.read_text().splitlines():
        if line.startswith(f"{key}="):
            return int(line.split("=", 1)[1])
    return None


def prepare_node(node: KafkaNode, free_port: int, internal_free_port: int) -> dict[str, int]:
    """Write the node's properties and logging config; the ports it will listen on.

    Ports already recorded for this node (controller, internal) are kept; the free ports
    passed in are used only the first time.
    """
    if node.security_protocol not in ("PLAINTEXT", "SASL_PLAINTEXT"):
        raise EmbeddedStackError(
            f"The embedded Kafka serves PLAINTEXT or SASL_PLAINTEXT (SCRAM), not "
            f"{node.security_protocol}. Point SHELFCAST_BOOTSTRAP_SERVERS at your own Kafka "
            "and set SHELFCAST_EMBEDDED_BROKER=false."
        )
    if node.security_protocol == "SASL_PLAINTEXT" and not node.scram:
        raise EmbeddedStackError(
            f"The embedded Kafka's SASL listener uses SCRAM; set SHELFCAST_KAFKA_SASL_MECHANISM "
            f"to one of {', '.join(_SCRAM)} (not {node.sasl_mechanism!r})."
        )
    node.root.mkdir(parents=True, exist_ok=True)
    controller = _read_port(node.properties, "shelfcast.controller.port") or free_port
    internal = _read_port(node.properties, "shelfcast.internal.port") or internal_free_port
    client = "SASL_PLAINTEXT" if node.scram else "PLAINTEXT"
    lines = [
        "# Written by shelfcast up; rewritten on every start.",
        f"shelfcast.controller.port={controller}",
        f"shelfcast.internal.port={internal}",
        "process.roles=broker,controller",
        "node.id=1",
        f"listeners=CLIENT://{node.host}:{node.port},INTERNAL://127.0.0.1:{internal},"
        f"CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=CLIENT://{node.host}:{node.port},INTERNAL://127.0.0.1:{internal}",
        f"listener.security.protocol.map=CLIENT:{client},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=INTERNAL",
        "controller.listener.names=CONTROLLER",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
        f"log.dirs={node.log_dir}",
        "num.partitions=2",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # Loopback and one node: the defaults' background threads only cost CPU here.
        "num.network.threads=2",
        "num.io.threads=4",
        "num.recovery.threads.per.data.dir=1",
    ]
    if node.scram:
        mechanism = (node.sasl_mechanism or "").lower()
        lines += [
            f"sasl.enabled.mechanisms={node.sasl_mechanism}",
            f"listener.name.client.{mechanism}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        ]
    node.properties.write_text("\n".join(lines) + "\n")
    (node.root / "log4j2.properties").write_text(_LOG4J2)
    return {"controller": controller, "internal": internal}


def class_archive_path(java: str, classpath: str) -> Path:
    """Where this environment keeps the archive of the broker's classes: in the virtualenv,
    named by the jars it was recorded with, their paths, sizes and times (a JVM refuses an
    archive of other jars: jars fetched again get an archive of their own), and the Java
    runtime that wrote it."""
    jars = hashlib.sha256()
    for jar in classpath.split(":"):
        try:
            found = Path(jar).stat()
            jars.update(f"{jar}\0{found.st_size}\0{found.st_mtime_ns}\0".encode())
        except OSError:
            jars.update(f"{jar}\0missing\0".encode())
    digest = jars.hexdigest()[:12]
    name = f"kafka-{digest}-java-{java_runtime(java)}.jsa"
    return Path(sys.prefix) / "share" / "shelfcast" / name


def _jvm(
    java: str,
    classpath: str,
    node: KafkaNode,
    heap: str,
    archive: Path | None = None,
    record_to: Path | None = None,
) -> list[str]:
    # Mapped, the archive's classes are not read, parsed and verified from the jars again: a
    # node serves in ~2 s on 2 cores, not ~3.5, and its start costs ~2 CPU-s less
    # (docs/benchmarks.md).
    return [
        java,
        *class_archive_options(archive, record_to),
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.root / 'log4j2.properties'}",
        "-cp",
        classpath,
    ]


def format_command(
    java: str, classpath: str, node: KafkaNode, archive: Path | None = None
) -> list[str]:
    """Format the storage once, as a one-node (standalone) KRaft quorum; with the broker's
    class ``archive`` mapped when it exists."""
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    return [
        *_jvm(java, classpath, node, "256m", archive),
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "--ignore-formatted",
        # Joined: an id that starts with "-" (1 in 64) would be read as an option.
        f"--cluster-id={cluster_id}",
        "-c",
        str(node.properties),
    ]


def server_command(
    java: str,
    classpath: str,
    node: KafkaNode,
    heap: str = "512m",
    archive: Path | None = None,
    record_to: Path | None = None,
) -> list[str]:
    """Run the node in the foreground; with the class ``archive`` mapped when it exists, or
    the classes it loaded written to ``record_to`` when the node stops."""
    return [
        *_jvm(java, classpath, node, heap, archive, record_to),
        "kafka.Kafka",
        str(node.properties),
    ]
