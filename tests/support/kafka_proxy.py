"""A Kafka broker of its own behind a TCP proxy that loses acknowledgements: the broker stores
what a producer sends, its answers never arrive, then the connection breaks and stays down.
The broker advertises the proxy's address, so every client connection goes through it.

Also a TCP server that accepts and never answers (a hung MLflow, for one)."""

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from shelfcast.embedded import free_port, stop_process, wait_for_port
from shelfcast.jars import broker_classpath, java_binary
from shelfcast.kafka_broker import (
    KafkaNode,
    class_archive_path,
    format_command,
    prepare_node,
    server_command,
)
from shelfcast.settings import load_settings

__all__ = [
    "AckLosingProxy",
    "BrokerBehindProxy",
    "HungServer",
    "broker_behind_proxy",
    "hung_server",
]


class AckLosingProxy:
    """Forwards TCP to ``target``. :meth:`hold`: requests still reach the broker, its answers
    are dropped; :meth:`cut`: every connection breaks and new ones are refused until
    :meth:`restore`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._state = "open"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._state = "hold"

    def cut(self) -> None:
        self._state = "down"
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._state = "open"

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._state == "down":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers and self._state != "open":
                    continue  # the broker's answer is lost
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class BrokerBehindProxy:
    """The running broker: ``bootstrap`` goes through the proxy, ``direct`` does not (its
    internal listener, for reading what it stored whatever the proxy does)."""

    def __init__(self, proxy: AckLosingProxy, internal: int) -> None:
        self.proxy = proxy
        self.bootstrap = f"127.0.0.1:{proxy.port}"
        self.direct = f"127.0.0.1:{internal}"


@contextlib.contextmanager
def broker_behind_proxy(root: Path, timeout: float = 90.0) -> Iterator[BrokerBehindProxy]:
    """Start a one-node KRaft broker under ``root`` behind an :class:`AckLosingProxy`;
    stopped by pid at the end."""
    node = KafkaNode(root / "kafka", "127.0.0.1", free_port())
    proxy = AckLosingProxy(node.port)
    ports = prepare_node(node, free_port(), free_port())
    listener = f"CLIENT://127.0.0.1:{node.port},"
    text = node.properties.read_text()
    advertised = next(ln for ln in text.splitlines() if ln.startswith("advertised.listeners="))
    node.properties.write_text(
        text.replace(advertised, advertised.replace(listener, f"CLIENT://127.0.0.1:{proxy.port},"))
    )
    jars = load_settings().jars_dir
    java, classpath = java_binary(), broker_classpath(jars)
    archive = class_archive_path(java, classpath)
    subprocess.run(format_command(java, classpath, node, archive), check=True, capture_output=True)
    with (root / "broker.log").open("ab") as log:
        proc = subprocess.Popen(
            server_command(java, classpath, node, archive=archive),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        assert wait_for_port("127.0.0.1", node.port, timeout), (root / "broker.log").read_text()
        yield BrokerBehindProxy(proxy, ports["internal"])
    finally:
        proxy.close()
        stop_process(proc.pid)


class HungServer:
    """A TCP server on loopback that accepts and never answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connected = threading.Event()  # someone waits on it
        self.release = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.release.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)
            self.connected.set()

    def drop(self) -> None:
        """Refuse from now on, and break every connection it holds."""
        self.release.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._listener.close()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@contextlib.contextmanager
def hung_server() -> Iterator[HungServer]:
    """A :class:`HungServer`, dropped at the end of the block."""
    server = HungServer()
    try:
        yield server
    finally:
        server.drop()
