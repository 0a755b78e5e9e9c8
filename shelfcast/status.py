"""``shelfcast status``: one view of the running service, from its files, Delta, Kafka and Ray."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shelfcast.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "batched",
    "committed_offsets",
    "coordinator_status",
    "count_series",
    "gather_status",
    "ingest_lag",
    "render_group",
    "render_status",
    "series_counts",
]


def committed_offsets(checkpoint: Path, topic: str | None = None) -> dict[int, int]:
    """Per partition of ``topic`` (None: the only one), the next offset the query will read
    (from its last committed batch)."""
    commits = checkpoint / "commits"
    batches = (
        sorted(int(p.name) for p in commits.iterdir() if p.name.isdigit())
        if commits.is_dir()
        else []
    )
    if not batches:
        return {}
    lines = (checkpoint / "offsets" / str(batches[-1])).read_text().splitlines()
    offsets: dict[str, Any] = json.loads(lines[-1])
    if offsets and all(isinstance(v, dict) for v in offsets.values()):
        # By topic (Spark's kafka format, ours with several topics): {topic: {partition: n}}.
        offsets = offsets.get(topic, {}) if topic else next(iter(offsets.values()))
    return {int(p): int(n) for p, n in offsets.items()}


def ingest_lag(settings: Settings, consumer: Any = None) -> dict[str, Any]:
    """Per partition of the POS topic: its end, what the query read, and the lag; through
    ``consumer`` when given (kept open by the caller), else one made and closed here."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from shelfcast.kafka import client_config

    committed = committed_offsets(settings.checkpoint_dir / "ingest", settings.topic_pos_sales)
    own = consumer is None
    if own:
        consumer = Consumer(
            {
                **client_config(settings),
                "group.id": "shelfcast-status",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
                "enable.partition.eof": True,
            }
        )
    try:
        topic = settings.topic_pos_sales
        meta = consumer.list_topics(topic, timeout=5).topics[topic]
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            for p in meta.partitions
        }
    except KafkaException as exc:
        return {"error": f"Kafka not reachable: {exc.args[0]}"}
    finally:
        if own:
            consumer.close()
    return {
        str(p): {"end": ends[p], "read": committed.get(p, 0), "lag": ends[p] - committed.get(p, 0)}
        for p in sorted(ends)
    }


def series_counts(settings: Settings) -> tuple[dict[str, int], dict[str, int]]:
    """Series by state, and by the model family of their served forecast."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        dt = DeltaTable(str(settings.delta_dir / "series_state"))
    except TableNotFoundError:
        return {}, {}
    # A table from before the family column (the service adds it when it starts) reads
    # without it.
    columns: list[str] = [
        c for c in ("status", "family") if c in {f.name for f in dt.schema().fields}
    ]
    return count_series(dt.to_pyarrow_table(columns=columns))


def count_series(table: "pa.Table | None") -> tuple[dict[str, int], dict[str, int]]:
    """Series by state (no state yet: "new"), and by the model family of their served
    forecast, counted in Arrow (a table without ``family`` is from before that column)."""
    import pyarrow.compute as pc

    if table is None or table.num_rows == 0:
        return {}, {}
    status = pc.fill_null(table.column("status"), "")
    status = pc.if_else(pc.equal(status, ""), "new", status)
    by_state = {str(s["values"]): int(s["counts"]) for s in pc.value_counts(status).to_pylist()}
    if "family" not in table.column_names:
        return by_state, {}
    families = pc.value_counts(table.column("family").drop_null()).to_pylist()
    return by_state, {str(f["values"]): int(f["counts"]) for f in families if f["values"]}


def coordinator_status(settings: Settings) -> dict[str, Any]:
    """The running coordinators' status, read by name: a status neither creates one nor
    imports the retrain stack to (the demo's view and ``status --watch`` ask every second;
    the first ask took ~1.2 CPU-s of imports while the demo started)."""
    from retrain.cluster.client import connect, running_status
    from shelfcast.retrain_config import ray_config

    try:
        cluster = ray_config(settings)
        connect(cluster)
        found = running_status(cluster, timeout=5)
    except Exception as exc:  # status must show what it can
        return {"error": f"Ray coordinator not reachable: {exc}"}
    if found is None:
        return {"absent": "no retrain coordinator yet: the service starts it"}
    return found


def gather_status(settings: Settings) -> dict[str, Any]:
    path = settings.service_status_file
    service = json.loads(path.read_text()) if path.is_file() else {}
    series, families = series_counts(settings)
    return {
        "service": service,
        "lag": ingest_lag(settings),
        "series": series,
        "families": families,
        "coordinator": coordinator_status(settings),
    }


def batched(coordinator: dict[str, Any]) -> str:
    """How many series a retrain task takes now, when more than one (shown beside the
    running count, which may then exceed the CPUs)."""
    size = int(coordinator.get("batch_size") or 1)
    return f" (up to {size} a task)" if size > 1 else ""


def render_group(name: str, g: dict[str, Any]) -> str:
    """A group model's line: its model, and its retrain's step while one runs."""
    if g.get("version") is not None:
        mae = f"{g['validation_mae']:.3f}" if g.get("validation_mae") is not None else "-"
        line = (
            f"group model {name}: v{g['version']} through {g['through']}, "
            f"{g['series'] or 0:,} series, validation MAE {mae}"
        )
    else:
        line = f"group model {name}: none yet"
    if g.get("training"):
        line += f"; training for {g.get('training_seconds') or 0:.0f} s: {g.get('progress')}"
    elif g.get("error"):
        line += f"; its last retrain failed: {g['error']}"
    return line


def render_status(status: dict[str, Any]) -> str:
    out = []
    service = status["service"]
    batch = service.get("last_batch")
    out.append(
        f"service: started {service.get('started_at', 'never')}"
        + (f", stopped {service['stopped_at']}" if service.get("stopped_at") else "")
    )
    if batch:
        out.append(
            f"last micro-batch {batch['batch_id']}: {batch['records']} records, "
            f"{batch['stored']} stored, {batch['quarantined']} quarantined, "
            f"{batch['changed_series']} series, {batch['seconds']:.2f} s "
            f"(at {service.get('updated_at')})"
        )
    lag = status["lag"]
    if "error" in lag:
        out.append(f"lag: {lag['error']}")
    else:
        out.append("lag: " + ", ".join(f"p{p} {v['lag']}" for p, v in lag.items()))
    out.append(
        "series: "
        + (", ".join(f"{k} {v}" for k, v in sorted(status["series"].items())) or "none yet")
    )
    families = status.get("families") or {}
    if families:
        ranked = sorted(families.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append("forecasts by family: " + ", ".join(f"{k} {v}" for k, v in ranked))
    c = status["coordinator"]
    if "error" in c:
        out.append(c["error"])
    elif "absent" in c:
        out.append(c["absent"])
    else:
        out.append(
            f"queue: {c['queued']} queued, {c['running']} running on {c['capacity']} CPUs"
            f"{batched(c)}, {len(c['poisoned'])} poisoned; "
            f"{c['retrains_last_minute']} retrains in the last minute; "
            f"{c['published']} forecasts published"
        )
        for name, g in sorted((c.get("groups") or {}).items()):
            out.append(f"  {render_group(name, g)}")
        for system, o in sorted((c.get("outages") or {}).items()):
            since = datetime.fromtimestamp(o["since"], UTC).isoformat()[:19]
            out.append(
                f"  {o['series']} series waiting for {system} since {since} (an outage, "
                f"retried until it answers): {o['error']}"
            )
        for f in c["latest"][:10]:
            mase = f"{f['validation_mase']:.3f}" if f["validation_mase"] is not None else "-"
            out.append(
                f"  {f['at'][:19]}  {f['series']:<16} v{f['model_version']:<4} "
                f"{f['method']:<14} {'warm' if f['warm'] else 'cold'}  MASE {mase}  "
                f"{f['seconds']:.2f} s"
            )
    return "\n".join(out)
