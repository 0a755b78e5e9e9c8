"""A series' history read from Delta equals delta-rs's own read, at every version."""

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from retrain.kernel.series import History, history_from_daily
from retrain.stores.history import load_history
from shelfcast.settings import Settings
from streaming.tables import TableStore
from tests.support.series import write_daily

START = date(2024, 1, 1)


def reference(uri: str, store_id: str, item_id: str, version: int) -> History:
    rows = DeltaTable(uri, version=version).to_pyarrow_table(
        columns=["item_id", "day", "units"], filters=[("store_id", "=", store_id)]
    )
    rows = rows.filter(pc.equal(rows.column("item_id").cast(pa.string()), item_id))
    return history_from_daily(rows, through=pc.max(rows.column("day")).as_py())


def test_history_at_each_version_across_commits_and_compaction(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    rng = np.random.default_rng(0)
    series = {(s, i): rng.poisson(5, 60).astype(float) for s in ("S1", "S2") for i in ("A", "B")}
    versions = [write_daily(settings, series, START)]
    for batch in range(1, 4):  # new days: a new file per partition each
        more = {key: rng.poisson(5, 10).astype(float) for key in series}
        versions.append(write_daily(settings, more, date(2024, 3, 1 + 10 * batch), batch_id=batch))
    # Late corrections: the files holding those days are rewritten.
    fix = {key: rng.poisson(1, 5).astype(float) for key in series}
    versions.append(write_daily(settings, fix, date(2024, 2, 20), batch_id=4))
    TableStore(settings.delta_dir).maintain(retention_hours=1000)  # compaction: new files
    uri = str(settings.delta_dir / "daily_sales")
    versions.append(DeltaTable(uri).version())
    assert versions[-1] > versions[-2], "compaction committed a version"
    # Newest first, then back: the worker's cached table handle moves both ways.
    for version in [versions[-1], *versions]:
        for store_id, item_id in series:
            ours = load_history(uri, store_id, item_id, version, history_days=365)
            theirs = reference(uri, store_id, item_id, version)
            assert ours.start == theirs.start
            np.testing.assert_array_equal(ours.values, theirs.values)
            # The pool is the store's total (both its items) over the series' days.
            store = [reference(uri, store_id, i, version) for i in ("A", "B")]
            assert ours.pool is not None
            for other in store:
                assert other.end == ours.end  # every item has a row on the last day here
            total = sum(other.values[-len(ours.values) :] for other in store)
            np.testing.assert_array_equal(ours.pool, total)
