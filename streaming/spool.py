"""The rejected records of one micro-batch: in memory up to a bound, past it in a temporary
Arrow file, so that a burst of large bad records never sits in the driver's memory whole."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import pyarrow as pa

from streaming.schemas import QUARANTINE

__all__ = ["RejectSpool"]


class RejectSpool:
    """``quarantine`` rows, added chunk by chunk; read back for the dead-letter topic
    (:meth:`parts`) and for the table (:meth:`data`). A context manager: the file goes."""

    def __init__(self, limit_bytes: int, folder: Path) -> None:
        self.limit_bytes = limit_bytes
        self.folder = folder
        self.num_rows = 0
        self._tables: list[pa.Table] = []
        self._bytes = 0
        self._path: Path | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def __enter__(self) -> "RejectSpool":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def spilled(self) -> bool:
        """Whether the rows went to a file."""
        return self._path is not None

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.num_rows += table.num_rows
        if self._writer is None and self._bytes + table.nbytes <= self.limit_bytes:
            self._tables.append(table)
            self._bytes += table.nbytes
            return
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix="rejects-", suffix=".arrow", dir=self.folder)
            os.close(handle)
            self._path = Path(name)
            self._writer = pa.ipc.new_file(name, QUARANTINE)
            for kept in self._tables:
                self._writer.write_table(kept)
            self._tables, self._bytes = [], 0
        self._writer.write_table(table)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def parts(self) -> Iterator[pa.Table]:
        """Every row, a part at a time (in memory: all at once)."""
        if self._path is None:
            if self._tables:
                yield pa.concat_tables(self._tables)
            return
        self._finish()
        with pa.memory_map(str(self._path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield pa.Table.from_batches([reader.get_batch(i)])

    @contextmanager
    def data(self) -> Iterator[pa.Table | pa.RecordBatchReader]:
        """Every row as one table, or as a stream of batches read from the file."""
        if self._path is None:
            yield pa.concat_tables(self._tables) if self._tables else QUARANTINE.empty_table()
            return
        self._finish()
        with pa.memory_map(str(self._path)) as source:
            reader = pa.ipc.open_file(source)
            yield pa.RecordBatchReader.from_batches(
                QUARANTINE, (reader.get_batch(i) for i in range(reader.num_record_batches))
            )

    def close(self) -> None:
        self._finish()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
        self._tables, self._bytes = [], 0
