"""Parquet parts: row groups sized by bytes, files rotated by size."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rivet.errors import IntegrityError
from rivet.output.base import PartTarget, PartWriter, StagedPart, finished_part, writer_memory_pool
from rivet.storage import staging

ROW_GROUP_BYTES = 32 * 1024 * 1024
ROW_GROUP_ROWS = 1024 * 1024


# How many leading values of a text column decide whether it is dictionary-encoded.
DICTIONARY_SAMPLE = 50_000


class DictionaryChoice:
    """Which columns to dictionary-encode, decided once per export and shared by its writers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._columns: list[str] | None = None

    def columns(self, schema: pa.Schema, sample: list[pa.RecordBatch]) -> list[str]:
        """The decision, made from ``sample`` by the first writer that asks."""
        with self._lock:
            if self._columns is None:
                self._columns = dictionary_columns(schema, sample)
            return self._columns


def dictionary_columns(schema: pa.Schema, sample: list[pa.RecordBatch]) -> list[str]:
    """Text columns whose first values repeat enough for dictionary encoding to pay off.

    On numbers, timestamps and unique text, dictionary encoding mostly costs time (up
    to a third of the encode) and is abandoned by the writer anyway.
    """
    chosen = []
    for i, field in enumerate(schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        values = pa.chunked_array([b.column(i) for b in sample], field.type).slice(0, DICTIONARY_SAMPLE)
        present = len(values) - values.null_count
        if present == 0 or pc.count_distinct(values).as_py() <= present // 2:
            chosen.append(field.name)
    return chosen


class ParquetPartWriter(PartWriter):
    """Buffers batches into row groups of about ``ROW_GROUP_BYTES`` of Arrow data.

    pyarrow writes one row group per ``write_table`` call, so batches are
    gathered first; the encode releases the GIL and overlaps with decoding.
    With ``max_file_size`` a new part starts before a row group that would
    push the current one past the limit (a single larger row group still
    goes whole into one part).
    """

    def __init__(
        self,
        target: PartTarget,
        *,
        row_group_bytes: int = ROW_GROUP_BYTES,
        dictionary: DictionaryChoice | None = None,
    ) -> None:
        super().__init__(target)
        limit = target.max_file_size
        self.row_group_bytes = min(row_group_bytes, limit) if limit else row_group_bytes
        self.row_group_rows = target.fmt.layout.row_group_rows or ROW_GROUP_ROWS
        self._pending: list[pa.RecordBatch] = []
        self._pending_bytes = 0
        self._pending_rows = 0
        self._dictionary = dictionary or DictionaryChoice()
        self._dictionary_columns: list[str] | None = None
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._part_rows = 0
        self._part_arrow_bytes = 0

    def _open(self) -> pq.ParquetWriter:
        layout = self.fmt.layout
        if self._dictionary_columns is None and layout.dictionary is None:
            self._dictionary_columns = self._dictionary.columns(self.schema, self._pending)
        self._path = self.staging(len(self.parts))
        self._part_rows = 0
        self._part_arrow_bytes = 0
        codec = self.fmt.compression
        return pq.ParquetWriter(
            staging.handle(self._path),
            self.schema,
            compression=codec if codec != "none" else None,
            compression_level=self.fmt.level,
            use_dictionary=self._dictionary_columns if layout.dictionary is None else layout.dictionary,
            store_decimal_as_integer=True,
            write_statistics=layout.statistics,
            data_page_size=layout.data_page_bytes,
            memory_pool=writer_memory_pool(),
        )

    def write(self, batch: pa.RecordBatch) -> None:
        """Add rows; a row group is written once enough are buffered."""
        while batch.num_rows:
            # Cut the batch where the row group fills up, so row groups (and parts) stay bounded.
            per_row = max(1, batch.nbytes // batch.num_rows)
            room = max(
                1,
                min((self.row_group_bytes - self._pending_bytes) // per_row, self.row_group_rows - self._pending_rows),
            )
            piece, batch = batch.slice(0, room), batch.slice(room)
            self._pending.append(piece)
            self._pending_bytes += piece.num_rows * per_row
            self._pending_rows += piece.num_rows
            if self._pending_bytes >= self.row_group_bytes or self._pending_rows >= self.row_group_rows:
                self._flush()

    def buffered_bytes(self) -> int:
        """The row group being filled."""
        return self._pending_bytes

    def flush(self) -> None:
        """Write the row group being filled now."""
        self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._writer is not None and self._would_overflow():
            self._close_part()
        if self._writer is None:
            self._writer = self._open()
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._part_rows += table.num_rows
        self._part_arrow_bytes += self._pending_bytes
        self.rows += table.num_rows
        self._pending, self._pending_bytes, self._pending_rows = [], 0, 0

    def _would_overflow(self) -> bool:
        """Whether the buffered row group would push the current part past ``max_file_size``.

        Estimated from the compression ratio seen so far in this part.
        """
        if not self.max_file_size or self._path is None or self._part_arrow_bytes == 0:
            return False
        written = os.stat(staging.handle(self._path)).st_size
        ratio = written / self._part_arrow_bytes
        return written + self._pending_bytes * ratio > self.max_file_size

    def _open_file_bytes(self) -> int:
        return os.stat(staging.handle(self._path)).st_size if self._writer is not None and self._path is not None else 0

    def bytes_estimate(self) -> int:
        """Closed parts, the open one, and the buffered rows at the open part's compression ratio."""
        closed = sum(p.bytes for p in self.parts)
        written = self._open_file_bytes()
        ratio = written / self._part_arrow_bytes if self._part_arrow_bytes else 1.0
        return closed + written + int(self._pending_bytes * ratio)

    def _close_part(self) -> None:
        if self._writer is None or self._path is None:
            return
        self._writer.close()
        self._writer = None
        # The footer is what every reader will count: it must hold each row handed to the writer.
        in_footer = pq.read_metadata(staging.handle(self._path)).num_rows
        if in_footer != self._part_rows:
            raise IntegrityError(
                f"part {self._path.name} holds {in_footer} row(s) but {self._part_rows} were written to it"
            )
        self.parts.append(finished_part(self._path, self._part_rows))

    def close(self) -> list[StagedPart]:
        """Write what is buffered and finish the last part."""
        self._flush()
        if self._writer is None and not self.parts:
            self._writer = self._open()
        self._close_part()
        return list(self.parts)

    def abort(self) -> None:
        """Close quietly and delete every staged file."""
        paths = [p.path for p in self.parts]
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the export already failed; keep its error
                pass
            self._writer = None
        if self._path is not None:
            paths.append(self._path)
        self._discard(paths)
        self.parts = []
