"""CSV parts: every supported type rendered as text, NULL as an empty field, "" for empty strings."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from rivet.output.base import PartTarget, PartWriter, StagedPart, finished_part, writer_memory_pool
from rivet.output.csv_render import render_batch, render_schema
from rivet.storage import staging


class CsvPartWriter(PartWriter):
    """One header line per part; rotation is checked after every batch."""

    def __init__(self, target: PartTarget) -> None:
        super().__init__(target)
        self.rendered_schema = render_schema(target.schema)
        self._stream: pa.NativeFile | None = None
        self._writer: pacsv.CSVWriter | None = None
        self._path: Path | None = None
        self._part_rows = 0

    def _open(self) -> None:
        self._path = self.staging(len(self.parts))
        self._part_rows = 0
        codec = self.fmt.compression
        if codec == "none":
            self._stream = pa.OSFile(staging.handle(self._path), "wb")
        else:
            self._stream = pa.CompressedOutputStream(staging.handle(self._path), codec)
        self._writer = pacsv.CSVWriter(self._stream, self.rendered_schema, memory_pool=writer_memory_pool())

    def write(self, batch: pa.RecordBatch) -> None:
        """Add rows."""
        if batch.num_rows == 0:
            return
        if self._writer is None:
            self._open()
        assert self._writer is not None and self._stream is not None and self._path is not None
        self._writer.write_batch(render_batch(batch, self.rendered_schema))
        if self.fmt.compression != "none":
            # The codec holds its output back; flushed once a batch, the file's size on disk is
            # what rotation and progress measure (at the cost of a few bytes per batch).
            self._stream.flush()
        self._part_rows += batch.num_rows
        self.rows += batch.num_rows
        if self.max_file_size and os.stat(staging.handle(self._path)).st_size >= self.max_file_size:
            self._close_part()

    def _open_file_bytes(self) -> int:
        return os.stat(staging.handle(self._path)).st_size if self._writer is not None and self._path is not None else 0

    def bytes_estimate(self) -> int:
        """Closed parts and what the open one holds so far."""
        written = self._open_file_bytes()
        return sum(p.bytes for p in self.parts) + written

    def _close_part(self) -> None:
        if self._writer is None or self._path is None or self._stream is None:
            return
        self._writer.close()
        self._stream.close()
        self._writer = self._stream = None
        self.parts.append(finished_part(self._path, self._part_rows))

    def close(self) -> list[StagedPart]:
        """Finish the last part (an empty result gets a header-only part)."""
        if self._writer is None and not self.parts:
            self._open()
        self._close_part()
        return list(self.parts)

    def abort(self) -> None:
        """Close quietly and delete every staged file."""
        paths = [p.path for p in self.parts]
        for closable in (self._writer, self._stream):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: BLE001 - keep the export's own error
                    pass
        self._writer = self._stream = None
        if self._path is not None:
            paths.append(self._path)
        self._discard(paths)
        self.parts = []
