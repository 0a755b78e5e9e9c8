"""Arrow schemas of the Delta tables the ingest writes. Types stay within what delta-spark reads."""

import pyarrow as pa

__all__ = [
    "APPEND_ONLY",
    "DAILY_SALES",
    "DRIFT",
    "FORECASTS",
    "PLANS",
    "POS_SALES",
    "QUARANTINE",
    "SERIES_STATE",
    "STORES",
    "TABLES",
]

_TS = pa.timestamp("us", tz="UTC")

POS_SALES = pa.schema(
    [
        ("event_id", pa.string()),
        ("store_id", pa.string()),
        ("item_id", pa.string()),
        ("sold_at", _TS),
        ("sale_date", pa.date32()),
        ("quantity", pa.float64()),
        ("unit_price", pa.float64()),
        ("kafka_topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp", _TS),
        ("batch_id", pa.int64()),
        ("ingested_at", _TS),
    ]
)

DAILY_SALES = pa.schema(
    [
        ("store_id", pa.string()),
        ("item_id", pa.string()),
        ("day", pa.date32()),
        ("units", pa.float64()),
        ("revenue", pa.float64()),
        ("returns", pa.float64()),
        ("event_count", pa.int64()),
        ("updated_batch_id", pa.int64()),
    ]
)

SERIES_STATE = pa.schema(
    [
        ("store_id", pa.string()),
        ("item_id", pa.string()),
        ("total_events", pa.int64()),
        ("events_since_retrain", pa.int64()),
        ("days_since_retrain", pa.int32()),
        ("pending_days", pa.list_(pa.date32())),
        ("first_sale_day", pa.date32()),
        ("last_sale_day", pa.date32()),
        ("last_sold_at", _TS),
        ("last_event_at", _TS),
        ("updated_batch_id", pa.int64()),
        ("updated_at", _TS),
        # Written by the retrain side (through the ingest driver, the tables' one writer).
        ("status", pa.string()),
        ("last_retrain_at", _TS),
        ("model_version", pa.string()),
        ("last_error", pa.string()),
        ("last_submitted_at", _TS),
        ("validation_mase", pa.float64()),
        ("drift_ratio", pa.float64()),
        # The model family of the served forecast (added later: ``TableStore.ensure`` adds
        # it to an older table, whose rows read it as null).
        ("family", pa.string()),
        # When a plan or the store record touching the series last changed, and how many
        # such changes were not yet handed over (added later, like ``family``).
        ("plans_changed_at", _TS),
        ("plan_changes_since_retrain", pa.int64()),
    ]
)

# The current state of every plan (contract plan v1): one row per plan_id, its highest
# revision; a cancelled plan stays, with cancelled true. item_id '*': every item of the store.
PLANS = pa.schema(
    [
        ("plan_id", pa.string()),
        ("revision", pa.int64()),
        ("cancelled", pa.bool_()),
        ("store_id", pa.string()),
        ("item_id", pa.string()),
        ("start_date", pa.date32()),
        ("end_date", pa.date32()),
        ("kind", pa.string()),
        ("depth", pa.float64()),
        ("unit_price", pa.float64()),
        ("published_at", _TS),
    ]
)

# Every store's master data (contract store v1): one row per store_id, its highest revision.
STORES = pa.schema(
    [
        ("store_id", pa.string()),
        ("revision", pa.int64()),
        ("country", pa.string()),
        ("subdivision", pa.string()),
        ("open_weekdays", pa.list_(pa.int32())),  # ISO: 1 Monday .. 7 Sunday
        ("store_type", pa.string()),
        ("assortment", pa.string()),
        ("attributes_json", pa.string()),  # a JSON object, keys sorted; null when none
        ("published_at", _TS),
    ]
)

# Every published forecast point, as the service saw it confirmed (drift reads these).
FORECASTS = pa.schema(
    [
        ("store_id", pa.string()),
        ("item_id", pa.string()),
        ("model_version", pa.int64()),
        ("day", pa.date32()),
        ("yhat", pa.float64()),
        ("yhat_lower", pa.float64()),
        ("yhat_upper", pa.float64()),
        ("data_through", pa.date32()),
        ("method", pa.string()),
        ("validation_mase", pa.float64()),
        ("mase_scale", pa.float64()),
        ("generated_at", _TS),
    ]
)

# Live error of a served forecast on each completed day of new actuals.
DRIFT = pa.schema(
    [
        ("store_id", pa.string()),
        ("item_id", pa.string()),
        ("model_version", pa.int64()),
        ("day", pa.date32()),
        ("actual", pa.float64()),
        ("yhat", pa.float64()),
        ("scaled_error", pa.float64()),
        ("recorded_at", _TS),
        ("batch_id", pa.int64()),
    ]
)

QUARANTINE = pa.schema(
    [
        ("source_topic", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        ("source_timestamp", _TS),
        ("raw_key", pa.binary()),
        ("raw_value", pa.binary()),
        ("reason", pa.string()),
        ("quarantined_at", _TS),
        ("batch_id", pa.int64()),
        # Set only where raw_key or raw_value holds the first bytes of a field too large to
        # bring whole into the driver (a batch over SHELFCAST_INGEST_MAX_BATCH_BYTES): the
        # whole field's size and SHA-256 (added later, like series_state's ``family``).
        ("raw_key_size", pa.int64()),
        ("raw_key_sha256", pa.string()),
        ("raw_value_size", pa.int64()),
        ("raw_value_sha256", pa.string()),
    ]
)

# Tables only ever appended to: compacted off the writers' path (streaming.compaction).
APPEND_ONLY = frozenset({"pos_sales", "quarantine", "forecasts", "drift"})

# name -> (schema, partition columns)
TABLES: dict[str, tuple[pa.Schema, list[str]]] = {
    "pos_sales": (POS_SALES, ["sale_date"]),
    "daily_sales": (DAILY_SALES, ["store_id"]),
    "series_state": (SERIES_STATE, []),
    "quarantine": (QUARANTINE, []),
    # By store, as daily_sales: a series' history (every version it served, its live errors)
    # is read from its store's files alone, however many stores the chain has.
    "forecasts": (FORECASTS, ["store_id"]),
    "drift": (DRIFT, ["store_id"]),
    "plans": (PLANS, ["store_id"]),
    "stores": (STORES, []),
}
