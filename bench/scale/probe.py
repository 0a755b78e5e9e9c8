"""What a scale run reads off the running processes and tables: memory and CPU from /proc,
the service's metrics and log, Delta's files, the forecast topic, console and status times."""

import json
import os
import random
import re
import statistics
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition

from bench import stats
from shelfcast.kafka import client_config
from shelfcast.settings import Settings

__all__ = [
    "ConsoleLoad",
    "ForecastWatch",
    "ProcessInfo",
    "batch_lines",
    "delta_files",
    "descendants",
    "metrics",
    "pct",
    "ray_processes",
]

_TICK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float | None:
    """:func:`bench.stats.pct`, None without values."""
    return stats.pct(values, q) if values else None


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str
    peak_rss_mb: float  # VmHWM
    rss_mb: float
    cpu_seconds: float

    @classmethod
    def of(cls, pid: int, name: str = "") -> "ProcessInfo | None":
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

        def kb(key: str) -> float:
            return float(fields.get(key, "0 kB").split()[0]) / 1024

        after = stat.rsplit(")", 1)[1].split()
        cpu = (int(after[11]) + int(after[12])) / _TICK
        return cls(pid, name or fields.get("Name", "").strip(), kb("VmHWM"), kb("VmRSS"), cpu)


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            after = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(after[1])].append(int(entry.name))
    return out


def descendants(root: int) -> list[int]:
    children = _children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def ray_processes(node_pids: Iterable[int]) -> dict[str, list[ProcessInfo]]:
    """Our Ray nodes' processes by role: ``coordinator`` (the actor), ``workers`` (task
    workers, idle or not), ``system`` (raylet, GCS, the rest)."""
    out: dict[str, list[ProcessInfo]] = {"coordinator": [], "workers": [], "system": []}
    for node in node_pids:
        for pid in descendants(node):
            line = _cmdline(pid)
            info = ProcessInfo.of(pid, line[:60])
            if info is None:
                continue
            if line.startswith("ray::Coordinator"):
                out["coordinator"].append(info)
            elif line.startswith("ray::") or "default_worker.py" in line:
                out["workers"].append(info)
            else:
                out["system"].append(info)
    return out


def metrics(port: int) -> dict[str, float]:
    """The service's Prometheus text as ``name{labels}`` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


_BATCH = re.compile(
    r"^(\S+ \S+) INFO shelfcast.ingest: batch (\d+): (\d+) records, (\d+) stored, .* ([\d.]+) s"
)
_HANDOFF = re.compile(
    r"^(\S+ \S+) INFO shelfcast.handoff: handed (\d+) series .* (\d+) forecasts published "
    r"\(([\d.]+) s\)"
)


def batch_lines(log: Path, since: float = 0.0) -> dict[str, list[dict[str, float]]]:
    """Micro-batches and hand-offs the service logged (their time after ``since``)."""
    from datetime import datetime

    out: dict[str, list[dict[str, float]]] = {"batches": [], "handoffs": []}
    for line in log.read_text(errors="replace").splitlines():
        for kind, pattern in (("batches", _BATCH), ("handoffs", _HANDOFF)):
            m = pattern.match(line)
            if not m:
                continue
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at < since:
                continue
            if kind == "batches":
                out[kind].append(
                    {
                        "at": at,
                        "batch": int(m.group(2)),
                        "records": int(m.group(3)),
                        "stored": int(m.group(4)),
                        "seconds": float(m.group(5)),
                    }
                )
            else:
                out[kind].append(
                    {
                        "at": at,
                        "series": int(m.group(2)),
                        "published": int(m.group(3)),
                        "seconds": float(m.group(4)),
                    }
                )
    return out


def delta_files(delta_dir: Path) -> dict[str, dict[str, float]]:
    """Per table: files in its current version and their MB, files on disk (not vacuumed
    yet) and their MB, and commit files in ``_delta_log``."""
    from deltalake import DeltaTable

    out = {}
    for table in sorted(p for p in delta_dir.iterdir() if (p / "_delta_log").is_dir()):
        dt = DeltaTable(str(table))
        actions = dt.get_add_actions(flatten=True)
        sizes = [int(v) for v in pa.chunked_array(actions.column("size_bytes")).to_pylist()]
        disk = [p for p in table.rglob("*.parquet") if "_delta_log" not in p.parts]
        out[table.name] = {
            "files": len(sizes),
            "mb": sum(sizes) / 1e6,
            "files_on_disk": len(disk),
            "mb_on_disk": sum(p.stat().st_size for p in disk) / 1e6,
            "log_files": len(list((table / "_delta_log").iterdir())),
            "version": dt.version(),
        }
    return out


class ForecastWatch:
    """Follows the forecast topic from its end now; records when each series' forecast with
    data through ``day`` arrived."""

    def __init__(self, settings: Settings, day: date) -> None:
        self.day = day.isoformat()
        self.consumer = Consumer(
            {
                **client_config(settings),
                "group.id": "bench-scale",
                "fetch.wait.max.ms": 50,
                "enable.auto.commit": False,
            }
        )
        topic = settings.topic_forecasts
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assign = []
        for p in parts:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assign.append(TopicPartition(topic, p, high))
        self.consumer.assign(assign)
        self.arrived: dict[str, float] = {}
        self.messages = 0
        self.versions: dict[str, int] = {}

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(2000, 0.1):
                if msg.error() is not None:
                    continue
                self.messages += 1
                value = json.loads(msg.value() or b"{}")
                if value.get("data_through") == self.day:
                    key = f"{value['store_id']}|{value['item_id']}"
                    self.arrived.setdefault(key, time.time())
                    self.versions[key] = value["model_version"]

    def close(self) -> None:
        self.consumer.close()


@dataclass
class ConsoleLoad:
    """``clients`` people on the console, each from its own loopback address, each asking
    for a series search, a series page and their API twins in turn (about ``rate`` requests
    a second each, under the console's per-address limit)."""

    port: int
    keys: list[str]
    clients: int = 10
    rate: float = 3.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _client(self, n: int) -> None:
        import httpx

        rng = random.Random(n)
        transport = httpx.HTTPTransport(local_address=f"127.0.1.{n + 1}")
        with httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", transport=transport, timeout=60
        ) as client:
            while not self._stop.is_set():
                key = rng.choice(self.keys)
                store = key.split("|")[0]
                for kind, path in (
                    ("series search (page)", f"/series?q={store}"),
                    ("series page", f"/series/{key}"),
                    ("api series search", f"/api/series?q={store}&limit=100"),
                    ("api series", f"/api/series/{key}"),
                ):
                    if self._stop.is_set():
                        return
                    began = time.perf_counter()
                    try:
                        answer = client.get(path)
                        seconds = time.perf_counter() - began
                        if answer.status_code == 200:
                            self.latencies[kind].append(seconds)
                        else:
                            self.errors[f"{kind} {answer.status_code}"] += 1
                    except httpx.HTTPError as exc:
                        self.errors[f"{kind} {type(exc).__name__}"] += 1
                        seconds = time.perf_counter() - began
                    self._stop.wait(max(0.0, 1 / self.rate - seconds))

    def summary(self) -> dict[str, Any]:
        return {
            kind: {
                "n": len(values),
                "p50_ms": 1000 * statistics.median(values),
                "p95_ms": 1000 * (pct(values, 0.95) or 0),
            }
            for kind, values in sorted(self.latencies.items())
            if values
        } | ({"errors": dict(self.errors)} if self.errors else {})
