"""Reading a query or table into memory: one stream, or chunks read by parallel workers.

The same plan, types, overrides and refusals as an export; the same source safety
(read-only snapshot, timeouts, bounded statements per chunk). With ``parallel`` a
PostgreSQL read shares one exported snapshot between its workers. Every read is
checked as an export's is: the rows the server sent, the rows decoded, the rows kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from rivet.execution.integrity import check_read

if TYPE_CHECKING:
    from rivet.plan.export import ExportPlan

T = TypeVar("T")


def read_table(plan: ExportPlan) -> pa.Table:
    """Every row of the plan's query, as one Arrow table (chunks in key order)."""
    schema, batches = read_batches(plan, lambda batch: batch)
    return pa.Table.from_batches(batches, schema=batches[0].schema if batches else schema)


def read_batches(
    plan: ExportPlan, keep: Callable[[pa.RecordBatch], T], *, text_views: bool = False
) -> tuple[pa.Schema, list[T]]:
    """The read's schema, and ``keep`` of each of its batches, in order (chunks in key order).

    ``keep`` turns each batch into what the caller holds (a polars frame, say) as soon as it
    arrives, so the Arrow batch can go: memory holds the result once, not twice. With
    ``text_views`` the batches hold text as ``string_view`` (polars' own layout).
    """
    if not plan.is_parallel:
        reader = plan.source.scan(plan.query, plan.overrides, plan.tuning)
        try:
            return pa.schema(reader), _drain(reader, f"read {plan.name}", keep, text_views)
        finally:
            reader.close()
    return _read_chunks(plan, keep, text_views)


def _drain(reader: Any, where: str, keep: Callable[[pa.RecordBatch], T], text_views: bool = False) -> list[T]:
    """``keep`` of every batch of ``reader``, checked against the counts the server and the reader kept."""
    kept, rows = [], 0
    schema = pa.schema(reader)
    while (batch := reader.next_batch()) is not None:
        record_batch = _by_column(batch, schema, text_views)
        rows += record_batch.num_rows
        kept.append(keep(record_batch))
    check_read(reader, rows, where)
    return kept


def _by_column(batch: Any, schema: pa.Schema, text_views: bool) -> pa.RecordBatch:
    """A native batch imported column by column.

    One import shares one release, so a column a consumer keeps without copying would
    keep the whole batch's memory; imported alone, it keeps only its own.
    """
    if isinstance(batch, pa.RecordBatch):
        return batch
    arrays = [pa.array(column) for column in batch.columns(text_views)]
    fields = [field.with_type(array.type) for field, array in zip(schema, arrays, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, schema.metadata))


def _read_chunks(plan: ExportPlan, keep: Callable[[pa.RecordBatch], T], text_views: bool) -> tuple[pa.Schema, list[T]]:
    from rivet.execution.chunked import ChunkSource
    from rivet.execution.pool import chunk_scan_options
    from rivet.plan.chunks import plan_chunks

    source = ChunkSource.open(plan)
    schema = source.schema
    chunks = plan_chunks(plan, source.planner, source.schema)
    options = chunk_scan_options(plan, source.snapshot)
    decimal, text = plan.server.split_overrides(plan.overrides)
    local = threading.local()
    sessions: list[Any] = []  # kept so every worker's connection closes when the read ends
    spare = [s for s in [source.take_planner()] if s is not None]  # the first worker reads with it
    readers: dict[int, Any] = {}
    lock = threading.Lock()

    def read(index: int) -> list[T]:
        if not hasattr(local, "session"):
            with lock:
                local.session = spare.pop() if spare else None
            local.session = local.session or plan.server.session()
            with lock:
                sessions.append(local.session)
        chunk = chunks[index]
        reader = local.session.scan(chunk.query, plan.query, options, decimal, text)
        with lock:
            readers[index] = reader
        try:
            return _drain(reader, f"read {plan.name} chunk {chunk.index} {chunk.label}", keep, text_views)
        finally:
            with lock:
                readers.pop(index, None)
            reader.close()

    pool = ThreadPoolExecutor(max_workers=plan.parallel, thread_name_prefix="rivet-read")
    try:
        parts = list(pool.map(read, range(len(chunks))))
    except BaseException:
        # Ctrl-C or a failed chunk: stop the chunks still reading, then let the workers go.
        with lock:
            for reader in readers.values():
                reader.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        sessions.clear()
        del source
    return schema, [kept for part in parts for kept in part]


class BatchStream:
    """A consume-once stream of bounded batches, for any Arrow consumer (``__arrow_c_stream__``).

    Batches come one at a time from the reader, which returns to Python between them,
    so Ctrl-C stops a consumer that waits on the stream. The read's counts are checked
    when the last batch has been taken; a stream left unfinished is closed with ``close()``.
    """

    def __init__(self, reader: Any, where: str) -> None:
        self._reader = reader
        self._where = where
        self._taken = False
        self.schema = pa.schema(reader)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        rows = 0
        try:
            while (batch := self._reader.next_batch()) is not None:
                record_batch = pa.record_batch(batch)
                rows += record_batch.num_rows
                yield record_batch
            check_read(self._reader, rows, self._where)
        finally:
            self._reader.close()

    def reader(self) -> pa.RecordBatchReader:
        """The stream as a pyarrow RecordBatchReader (once)."""
        if self._taken:
            raise RuntimeError(f"{self._where}: the stream was consumed already; read again for another")
        self._taken = True
        return pa.RecordBatchReader.from_batches(self.schema, self._batches())

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """The Arrow C stream of the batches (consume-once)."""
        return self.reader().__arrow_c_stream__(requested_schema)

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._reader.cancel()
        self._reader.close()
