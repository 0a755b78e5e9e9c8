"""Which files of a Delta table a console read opens, chosen from the table's add actions.

delta-rs builds a read's dataset (``DeltaTable.to_pyarrow_dataset``) by evaluating the
filter against every file of the table: 48 ms a read at 5,807 files (10,000 series, 200
stores, between two compactions), whatever the store asked for, and it grows with the chain.
The table's add actions come as one Arrow table (1.3 ms for those files) that changes only
with the table's version, so a reader keeps them per version and picks a read's files with
a vectorised filter: by partition value, then by the files' min/max statistics.
"""

import operator
from datetime import date
from functools import reduce
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

__all__ = ["TableFiles", "chosen_files", "files_dataset", "table_files"]


class TableFiles(NamedTuple):
    """A table's files at one version: its add actions, schema and partition columns."""

    actions: "pa.Table"
    schema: "pa.Schema"
    partitioned: list[str]


def table_files(dt: "DeltaTable") -> TableFiles | None:
    """The table's files (add actions as Arrow: path, partition values, min/max statistics),
    or None when a dataset of its files would not read it as Delta does (reader features such
    as deletion vectors or column mapping, paths outside the table, partitions not strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    protocol = dt.protocol()
    if protocol.min_reader_version >= 3 and protocol.reader_features:
        return None
    schema = pa.schema(dt.schema().to_arrow())
    partitioned = dt.metadata().partition_columns
    if any(not pa.types.is_string(schema.field(c).type) for c in partitioned):
        return None
    actions = pa.table(dt.get_add_actions(flatten=True))
    if any(f"partition.{c}" not in actions.column_names for c in partitioned):
        return None
    paths = actions.column("path")
    outside = pc.or_(pc.starts_with(paths, "/"), pc.match_substring(paths, "://"))
    return None if pc.any(outside).as_py() else TableFiles(actions, schema, partitioned)


def chosen_files(files: TableFiles, equal: dict[str, str], after: date | None = None) -> "pa.Table":
    """The add actions of ``files`` whose files may hold rows whose ``equal`` columns match and,
    with ``after``, whose ``day`` is later: by partition value; by min/max where the file
    has them (delta-rs rounds a long string's max up, so a range holds what its file holds);
    a file without statistics is kept."""
    import pyarrow as pa
    import pyarrow.compute as pc

    actions = files.actions
    names = set(actions.column_names)
    mask = None
    for column, value in equal.items():
        if column in files.partitioned:
            keep = pc.equal(actions[f"partition.{column}"], value)
        elif {f"min.{column}", f"max.{column}"} <= names:
            low, high = actions[f"min.{column}"], actions[f"max.{column}"]
            unknown = pc.or_(pc.is_null(low), pc.is_null(high))
            within = pc.and_kleene(pc.less_equal(low, value), pc.greater_equal(high, value))
            keep = pc.or_kleene(unknown, within)
        else:
            continue
        mask = keep if mask is None else pc.and_kleene(mask, keep)
    if after is not None and "max.day" in names:
        high = actions["max.day"]
        later = pc.or_kleene(pc.is_null(high), pc.greater(high, pa.scalar(after, pa.date32())))
        mask = later if mask is None else pc.and_kleene(mask, later)
    return actions if mask is None else actions.filter(mask)


def files_dataset(
    files: TableFiles, chosen: "pa.Table", filesystem: "pafs.FileSystem"
) -> "ds.Dataset":
    """A dataset of the files in ``chosen`` (add actions of ``files``), on ``filesystem``
    rooted at the table, as ``to_pyarrow_dataset`` makes one: each file's partition values
    become its rows' columns."""
    import pyarrow.dataset as ds

    fmt = ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True)
    )
    values = {c: chosen.column(f"partition.{c}").to_pylist() for c in files.partitioned}
    fragments = []
    for n, path in enumerate(chosen.column("path").to_pylist()):
        equals = [
            ds.field(c).is_null() if values[c][n] is None else ds.field(c) == values[c][n]
            for c in files.partitioned
        ]
        expression = reduce(operator.and_, equals) if equals else ds.scalar(True)
        # The log holds a file's path as a URI: escaped once more than its name on disk.
        fragments.append(
            fmt.make_fragment(unquote(path), filesystem=filesystem, partition_expression=expression)
        )
    return ds.FileSystemDataset(fragments, files.schema, fmt, filesystem)
