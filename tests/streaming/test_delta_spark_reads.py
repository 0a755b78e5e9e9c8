"""delta-spark reads every table Shelfcast writes (delta-rs) as delta-rs does: rows and schema,
at the latest and every older version, and no protocol feature delta-spark lacks."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql.pandas.types import to_arrow_schema

from contracts import Forecast, ForecastPoint
from shelfcast.ingest_config import ingest_config
from shelfcast.settings import Settings
from streaming.dead_letters import DeadLetterTopic
from streaming.handoff import Handoff
from streaming.query import build_pipeline
from streaming.schemas import TABLES
from streaming.thresholds import ThresholdStore
from tests.support.events import plan, sale, store_record

pytestmark = pytest.mark.integration

START = date(2024, 3, 1)
NOW = datetime(2024, 3, 20, 12, tzinfo=UTC)


class Coordinator:
    """The retrain side as the hand-off sees it (``RetrainClient``): takes due series, and
    reports one finished retrain with its published forecast."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str, float]] = []
        self.updates: list[dict[str, Any]] = []

    def submit(self, due: list[tuple[str, str, float]], version: int) -> None:
        self.submitted.extend(due)

    def peek_updates(self) -> list[dict[str, Any]]:
        return list(self.updates)

    def ack_updates(self, seq: int) -> None:
        self.updates = [u for u in self.updates if u["seq"] > seq]

    def finish(self, store_id: str, item_id: str, through: date) -> None:
        days = [through + timedelta(days=k) for k in range(1, 8)]
        forecast = Forecast(
            store_id=store_id,
            item_id=item_id,
            generated_at=NOW,
            model_version=1,
            mlflow_run_id="run-1",
            method="tuned",
            data_through=through,
            horizon=len(days),
            points=tuple(
                ForecastPoint(date=d, yhat=5.0 + k, yhat_lower=3.0, yhat_upper=9.0 + k)
                for k, d in enumerate(days)
            ),
            validation_mase=0.8,
        )
        self.updates.append(
            {
                "seq": len(self.updates) + 1,
                "store_id": store_id,
                "item_id": item_id,
                "status": "done",
                "at": NOW.timestamp(),
                "model_version": "1",
                "seconds": 1.5,
                "error": None,
                "mase_scale": 1.25,
                "forecast": forecast.model_dump(mode="json"),
            }
        )


def raw(records: list[Any], first_offset: int, topic: str = "pos.sales") -> pa.Table:
    """Kafka records as the source hands them to foreachBatch (events as JSON, or raw pairs)."""
    pairs = [(None, json.dumps(r).encode()) if isinstance(r, dict) else r for r in records]
    n = len(pairs)
    return pa.table(
        {
            "key": pa.array([k for k, _ in pairs], pa.binary()),
            "value": pa.array([v for _, v in pairs], pa.binary()),
            "topic": [topic] * n,
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array(range(first_offset, first_offset + n), pa.int64()),
            "timestamp": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def sales(tag: str, days: range, series: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        sale(
            f"{tag}-{s}-{i}-{k}",
            s,
            i,
            (START + timedelta(days=k)).isoformat(),
            quantity=float(1 + (k * 7 + len(i)) % 5),
            unit_price=2.5,
        )
        for k in days
        for s, i in series
    ]


def write_every_table(settings: Settings) -> None:
    """Shelfcast's own writes: three micro-batches through the pipeline and the hand-off
    (appends, merges into daily_sales and series_state, quarantine, forecasts, drift), then
    compaction and vacuum, and a checkpoint as delta-rs writes one every 100 commits."""
    pipeline = build_pipeline(ingest_config(settings))
    pipeline._app_id = "test-app"
    coordinator = Coordinator()
    handoff = Handoff(
        pipeline.store,
        ThresholdStore(settings.data_dir),
        coordinator,
        lambda: pipeline.app_id,
        pipeline.lock,
    )
    pipeline.after_commit.append(handoff.after_batch)
    series = [("S1", "I1"), ("S1", "I2"), ("S2", "I1")]
    offset = 0

    def batch(records: list[Any], batch_id: int, *others: pa.Table) -> None:
        nonlocal offset
        pipeline.process(pa.concat_tables([raw(records, offset), *others]), batch_id)
        offset += len(records)

    bad = [(None, b"{oops"), (b"S9|I9", json.dumps(sale("k")).encode())]
    plans = raw(
        [plan("p1", depth=0.2), plan("p2", kind="price", item="I1", unit_price=1.5)],
        0,
        settings.topic_pos_plans,
    )
    stores = raw([store_record("S1", attributes={"promo2": True})], 0, settings.topic_pos_stores)
    try:
        batch(
            [*sales("a", range(10), series), sales("a", range(1), series)[0], *bad],
            0,
            plans,
            stores,
        )
        coordinator.finish("S1", "I1", START + timedelta(days=9))
        # Days already stored (a merge updates them), and actuals for forecast days (drift).
        batch(sales("b", range(8, 13), series), 1)
        batch([*sales("c", range(12, 14), series[:2]), (None, b"\xff")], 2)
    finally:
        if isinstance(pipeline.dead_letters, DeadLetterTopic):
            pipeline.dead_letters.close()

    pipeline.store.maintain(settings.delta_vacuum_retention_hours)
    for name in TABLES:
        pipeline.store.table(name).create_checkpoint()
    assert coordinator.submitted and not coordinator.updates


def _normal(kind: pa.DataType) -> pa.DataType:
    """One spelling per type: large and view variants as plain ones, list items as ``item``."""
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_list_view(kind):
        item = kind.value_field
        return pa.list_(pa.field("item", _normal(item.type), item.nullable))
    return kind


def normal(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _normal(f.type), f.nullable) for f in schema])


def rows(table: pa.Table, schema: pa.Schema) -> list[str]:
    """Rows in the declared column order and types, order-independent."""
    table = table.select(schema.names).cast(schema)
    return sorted(json.dumps(r, default=str, sort_keys=True) for r in table.to_pylist())


def spark_read(spark: Any, path: str, version: int | None) -> tuple[pa.Schema, pa.Table]:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    frame = reader.load(path)
    zone = spark.conf.get("spark.sql.session.timeZone")
    return normal(to_arrow_schema(frame.schema, timezone=zone)), frame.toArrow()


def supported_features(spark: Any) -> set[str]:
    """Table features the running delta-spark (4.4) supports, lower case as it keys them."""
    features = spark._jvm.org.apache.spark.sql.delta.TableFeature.allSupportedFeaturesMap()
    return set(str(features.keySet().mkString(",")).split(","))


@contextmanager
def snapshot_partitions(spark: Any, n: int) -> Iterator[None]:
    """delta-spark computes each version's snapshot in 50 tasks by default: 10-15 s a version
    on 2 busy cores, ~1 s with one task (a setting of the reader, not of the tables)."""
    key = "spark.databricks.delta.snapshotPartitions"
    before = spark.conf.get(key, None)
    spark.conf.set(key, str(n))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def test_delta_spark_reads_every_table_as_delta_rs_does(
    spark: Any, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    write_every_table(settings)
    supported = supported_features(spark)
    changed = set()
    with snapshot_partitions(spark, 1):
        for name, (declared, _) in TABLES.items():
            path = str(settings.delta_dir / name)
            latest = DeltaTable(path)
            protocol = latest.protocol()
            assert protocol.min_reader_version <= 3 and protocol.min_writer_version <= 7, name
            features = {*(protocol.reader_features or ()), *(protocol.writer_features or ())}
            assert {f.lower() for f in features} <= supported, (name, features)
            (detail,) = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()
            assert (detail.minReaderVersion, detail.minWriterVersion) == (
                protocol.min_reader_version,
                protocol.min_writer_version,
            )

            # The latest version, the first write and the empty table as created.
            newest = latest.version()
            assert newest >= 1, f"{name} was never written"
            for version in (newest, 1, 0):
                theirs = DeltaTable(path)
                theirs.load_as_version(version)
                expected = theirs.to_pyarrow_table()
                schema, ours = spark_read(spark, path, None if version == newest else version)
                assert schema == normal(declared) == normal(expected.schema), (name, version)
                assert ours.num_rows == expected.num_rows, (name, version)
                assert rows(ours, declared) == rows(expected, declared), (name, version)
                assert expected.num_rows > 0 or version == 0, (name, version)
                if version == 1 and rows(expected, declared) != rows(
                    latest.to_pyarrow_table(), declared
                ):
                    changed.add(name)
    # Older versions hold other rows, so time travel was really read (merges: other values).
    assert changed == {"pos_sales", "daily_sales", "series_state", "quarantine", "drift"}
