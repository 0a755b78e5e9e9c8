"""Benchmark: reading a group's ``daily_sales`` for its model at N series.

A chain of ``--series`` series (50 to a store) with ``--days`` of history, written as
``shelfcast import`` writes it, then read whole for one group model two ways, each in a
process of its own (peak RSS is per process):

- ``retrain.stores.history.load_group``: what a group retrain runs (Arrow and numpy);
- the baseline: the same rows through pandas, a group and a Python date a row, as the
  group retrain read them before.

Prints wall time and the peak RSS each read added, and their ratios (Linux).

    python -m bench.group_read [--series 10000] [--days 730] [--table DIR]
"""

import argparse
import json
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from deltalake import DeltaTable

from bench.daily_merge import build_chain, child_result, peak_mb
from retrain.kernel.series import PRICE_DAYS
from retrain.stores.history import SeriesRows, load_group

COLUMNS = ["store_id", "item_id", "day", "units", "revenue"]


def pandas_read(uri: str, history_days: int) -> list[SeriesRows]:
    """The baseline: every row to pandas, then a group a series."""
    rows = DeltaTable(uri).to_pyarrow_table(columns=COLUMNS)
    last: date = pc.max(rows.column("day")).as_py()
    first = last - timedelta(days=history_days - 1)
    frame = rows.filter(pc.greater_equal(rows.column("day"), first)).to_pandas()
    frame["store_id"] = frame["store_id"].astype(str)
    frame["item_id"] = frame["item_id"].astype(str)
    out = []
    for (store_id, item_id), part in frame.groupby(["store_id", "item_id"], sort=True):
        start = min(part["day"])
        values = np.zeros((last - start).days + 1)
        np.add.at(values, [(day - start).days for day in part["day"]], part["units"])
        recent = part[part["day"] > last - timedelta(days=PRICE_DAYS)]
        units, revenue = float(recent["units"].sum()), float(recent["revenue"].sum())
        price = revenue / units if units > 0 and revenue > 0 else None
        out.append(SeriesRows(str(store_id), str(item_id), start, values, price))
    return out


def _child(uri: str, history_days: int, ours: bool) -> dict[str, float]:
    before = peak_mb()
    began = time.perf_counter()
    if ours:
        found, _ = load_group(uri, None, None, history_days)
    else:
        found = pandas_read(uri, history_days)
    return {
        "seconds": time.perf_counter() - began,
        "mb": peak_mb() - before,
        "series": len(found),
        "days": sum(len(one.values) for one in found),
    }


def _run(uri: str, history_days: int, ours: bool) -> dict[str, float]:
    args = ["--child", uri, str(history_days)] + (["--ours"] if ours else [])
    return child_result("bench.group_read", *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--table", type=Path, help="an existing Delta directory (not built)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--ours", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]), args.ours)))
        return
    with tempfile.TemporaryDirectory(prefix="shelfcast-group-read-") as tmp:
        root = args.table
        if root is None:
            root = Path(tmp) / "chain"
            began = time.perf_counter()
            build_chain(root, args.series, args.days)
            print(
                f"{args.series:,} series x {args.days} days in daily_sales "
                f"({time.perf_counter() - began:.1f} s to build)"
            )
        uri = str(root / "daily_sales")
        ours = _run(uri, args.days, ours=True)
        base = _run(uri, args.days, ours=False)
        assert ours["days"] == base["days"], (ours, base)
        print(
            f"{int(ours['series']):,} series, {int(ours['days']):,} days: "
            f"load_group {ours['seconds']:.1f} s, +{ours['mb']:,.0f} MB; "
            f"pandas {base['seconds']:.1f} s, +{base['mb']:,.0f} MB; "
            f"ours/pandas: time {ours['seconds'] / base['seconds']:.2f}, "
            f"memory {ours['mb'] / max(base['mb'], 1.0):.2f}"
        )


if __name__ == "__main__":
    main()
