"""The worker threads of a chunked read.

Each worker reads chunks into one part and publishes it near ``max_file_size``, within
the run's memory budget, and retries a failed read on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rivet.config.tuning import MIB
from rivet.core import failpoints
from rivet.core.events import Observer
from rivet.core.retry import Retrier, RetryClass, RetryPolicy
from rivet.core.runinfo import current_rss_bytes, iso_us, utc_now
from rivet.errors import CancelledError, ChunkError
from rivet.execution.chunkqueue import ChunkQueue, ChunkRead, Task
from rivet.execution.commit import commit_parts
from rivet.execution.counter import ChunkCounter
from rivet.execution.integrity import check_read
from rivet.execution.rows import OutputRows
from rivet.output import open_part_writer
from rivet.output.base import PartWriter
from rivet.output.parquet import DictionaryChoice
from rivet.output.quality import QualityTracker
from rivet.sources.base import scan_options
from rivet.sources.connectorx import ConnectorxReader, ConnectorxScanner, FastPathError
from rivet.storage.destinations import Destination

if TYPE_CHECKING:
    from rivet._native import BatchReader
    from rivet.plan.export import ExportPlan
    from rivet.sources.base import Session

log = logging.getLogger("rivet")


# The smallest batch a worker's share of the memory budget may shrink to (max_batch_memory_mb aside).
MIN_BATCH_BYTES = 2 * 1024 * 1024


MAX_BATCH_BYTES = 1 << 30


def chunk_scan_options(plan: ExportPlan, snapshot: str | None) -> dict[str, Any]:
    """The reader options of one chunk's scan, with the worker's share of the batch memory."""
    # The export's batch memory is shared by its workers, so memory stays bounded as parallel
    # grows. A worker gets half of its share per batch: besides the batches in flight it holds
    # a row group being filled, which pins the batches it was cut from (measured: a quarter
    # less peak memory on the benchmark tables, at the same speed).
    return scan_options(
        plan.tuning,
        method="copy",
        batch_bytes=min(
            max(MIN_BATCH_BYTES, plan.tuning.batch_bytes // (2 * plan.parallel)),
            plan.tuning.max_batch_bytes or MAX_BATCH_BYTES,
        ),
        throttle=False,
        snapshot=snapshot,
        reconcile=plan.reconcile,
    )


# How often a worker held back by memory_threshold_mb looks at the resident memory again.
MEMORY_POLL_S = 0.05


# Without max_file_size, a worker's part grows to this before it is published.
DEFAULT_PART_BYTES = 512 * 1024 * 1024


@dataclass
class FillingPart:
    """The part a worker is writing: consecutive chunks it read, not yet published."""

    writer: PartWriter
    first: int  # the first chunk's index names the part
    reads: list[ChunkRead] = field(default_factory=list)
    quality: QualityTracker | None = None  # counts of this part's rows, kept once it is published
    opened: float = field(default_factory=time.monotonic)

    def has_room(self, limit: int) -> bool:
        """Whether another chunk of the average size so far still fits under ``limit``."""
        size = self.writer.bytes_estimate()
        return size + size // max(1, len(self.reads)) <= limit

    def held_for(self, seconds: float | None) -> bool:
        """Whether its chunks have waited ``seconds`` to count (None: never, by time)."""
        return seconds is not None and time.monotonic() - self.opened >= seconds


class SpoiledPart(Exception):
    """connectorx failed after writing some rows of a chunk: its part must be written again."""


class ChunkPool:
    """Worker threads that claim chunks until none are left or one fails for good.

    A worker writes the chunks it claims into one part and publishes the part at a
    chunk boundary once another chunk would push it past ``max_file_size`` (or when
    no chunk is left); the chunks are done then. When a read fails, the part is
    dropped, its other chunks go back to the queue, and the failed chunk is retried.
    """

    def __init__(
        self,
        plan: ExportPlan,
        queue: ChunkQueue,
        destination: Destination,
        schema: pa.Schema,
        stem: str,
        snapshot: str | None,
        progress: ChunkCounter,
        events: Observer,
        fast: ConnectorxScanner | None = None,
        rows: OutputRows | None = None,
        spare: Session | None = None,
    ) -> None:
        """A pool of ``plan.parallel`` workers.

        ``schema`` is the output's: the source's columns and the meta columns ``rows`` adds;
        ``spare`` an open connection the first worker to read natively takes.
        """
        self.plan = plan
        self.rows = rows
        self.quality = rows.quality if rows is not None else None
        self.fast = fast
        self.fallbacks = 0
        self.queue = queue
        self.destination = destination
        self.schema = schema
        self.stem = stem
        self.part_bytes = plan.max_file_size or DEFAULT_PART_BYTES
        self.checkpoint_every_s = plan.checkpoint_every_s if plan.checkpoint else None
        self.options = chunk_scan_options(plan, snapshot)
        self.progress = progress
        self.events = events
        self.retrier = Retrier(
            plan.name,
            RetryPolicy(plan.tuning.max_retries, plan.tuning.retry_backoff_ms / 1000),
            plan.max_attempts,
            events,
        )
        self.abort = threading.Event()
        self.error: BaseException | None = None
        self.readers: dict[int, BatchReader | ConnectorxReader] = {}
        self.lock = threading.Lock()
        self.dictionary = DictionaryChoice()
        self.reading = 0  # workers between claiming a chunk and finishing it
        self.paused_once = False
        self.spare = [spare] if spare is not None else []

    def run(self) -> None:
        """Start the workers and wait; Ctrl-C stops them all."""
        threads = [
            threading.Thread(target=self._worker, args=(w,), name=f"rivet-chunk-{w}", daemon=True)
            for w in range(self.plan.parallel)
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self._stop()
            for t in threads:
                t.join(10)
            raise
        if self.error is not None:
            raise self.error

    def _stop(self) -> None:
        self.abort.set()
        with self.lock:
            for reader in self.readers.values():
                reader.cancel()

    def _worker(self, wid: int) -> None:
        sessions: list[Session] = []  # opened on the first native read, dropped to reconnect

        def session() -> Session:
            if not sessions:
                with self.lock:
                    spare = self.spare.pop() if self.spare else None
                sessions.append(spare or self.plan.server.session())
            return sessions[0]

        part: FillingPart | None = None
        retry: Task | None = None  # a failed chunk, read again after the backoff
        attempts: dict[int, int] = {}
        last: int | None = None
        try:
            while not self.abort.is_set():
                if retry is None:
                    self._wait_for_memory()
                task = retry or self.queue.claim(after=last)
                retry = None
                if task is None and part is None:
                    return
                # A failure is charged to the chunk being read, or to the last one of the part being published.
                current = task if task is not None else part.reads[-1].task  # type: ignore[union-attr]
                try:
                    if task is not None:
                        part = part or self._open_part(task)
                        with self.lock:
                            self.reading += 1
                        started, clock = iso_us(utc_now()), time.perf_counter()
                        try:
                            rows = self._read_into(part, wid, session, task)
                        finally:
                            with self.lock:
                                self.reading -= 1
                        part.reads.append(ChunkRead(task, rows, started, time.perf_counter() - clock))
                        last = task.index
                        self.progress.advance(rows)
                        self.progress.filling(wid, part.writer.bytes_written())
                        self._report()
                    # Published when full, when the queue is empty, or, checkpointed, when its chunks have
                    # waited long enough: an interrupted run keeps all but the last stretch of work.
                    full = part is not None and not part.has_room(self.part_bytes)
                    if part is not None and (task is None or full or part.held_for(self.checkpoint_every_s)):
                        self._publish(part, wid)
                        published, part = part, None
                        self._announce(published)
                except Exception as e:  # noqa: BLE001 - classified below; the run fails on the first permanent one
                    if part is not None:
                        part.writer.abort()
                        self.queue.release(r.task for r in part.reads if r.task.index != current.index)
                        part = None
                    if self.abort.is_set():
                        return
                    if isinstance(e, SpoiledPart):
                        retry = current  # read again at once, natively; not a failed attempt
                        continue
                    attempts[current.index] = attempt = attempts.get(current.index, 0) + 1
                    verdict, wait = self.retrier.next_attempt(e, attempt, chunk=current.index, label=current.label)
                    if verdict.kind is RetryClass.RECONNECT:
                        sessions.clear()
                    if wait is None:
                        self.queue.fail(current, e)
                        self._failed(current, attempt, e)
                        return
                    if self.abort.wait(wait):
                        return
                    retry = current
        finally:
            if part is not None:
                # Stopped with a part not published: its chunks stay unfinished, for --resume.
                part.writer.abort()

    def _wait_for_memory(self) -> None:
        """With memory_threshold_mb: start no new chunk while the process is above it.

        A worker waits only while another one is reading (its chunk ends, its memory goes
        back), so they never all wait.
        """
        threshold = self.plan.tuning.memory_threshold_bytes
        while threshold is not None and not self.abort.is_set():
            rss = current_rss_bytes()
            with self.lock:
                if rss is None or rss <= threshold or self.reading == 0:
                    return
                if not self.paused_once:
                    self.paused_once = True
                    log.warning(
                        "export %s: resident memory %d MiB is above memory_threshold_mb (%d): new chunks wait "
                        "for the chunks being read",
                        self.plan.name,
                        rss // MIB,
                        threshold // MIB,
                    )
            self.abort.wait(MEMORY_POLL_S)

    def _failed(self, task: Task, attempts: int, error: BaseException) -> None:
        with self.lock:
            if self.error is None and not isinstance(error, CancelledError):
                self.error = ChunkError(
                    f"chunk {task.index} {task.label} failed after {attempts} attempt(s): {error}\n  SQL: {task.query}",
                    cause=error,
                )
        self._stop()

    def _open_part(self, task: Task) -> FillingPart:
        plan = self.plan
        key = f"{self.queue.run_id}-c{task.index}"
        writer = open_part_writer(
            plan.format,
            self.schema,
            lambda n: self.destination.staging_path(key, n),
            self.part_bytes,
            share=plan.parallel,
            dictionary=self.dictionary,
            partitioning=plan.partitioning,
        )
        return FillingPart(writer, task.index, quality=self.quality.part() if self.quality else None)

    def _read_into(self, part: FillingPart, wid: int, session: Callable[[], Session], task: Task) -> int:
        """Append every row of ``task`` to ``part``; the rows written."""
        fast = self.fast
        if fast is not None:
            try:
                return self._copy(part, wid, task, fast.open(task.query))
            except FastPathError as e:
                with self.lock:
                    self.fallbacks += 1
                    if e.rows_written:
                        # Rows of this chunk are in the part already: from now on every chunk is read natively.
                        self.fast = None
                if e.rows_written:
                    log.warning(
                        "chunk %d %s: %s after %d rows; the native reader writes its part again and reads the rest",
                        task.index,
                        task.label,
                        e,
                        e.rows_written,
                    )
                    raise SpoiledPart(str(e)) from e
                log.warning("chunk %d %s: %s; the native reader reads it", task.index, task.label, e)
        plan = self.plan
        decimal, text = plan.server.split_overrides(plan.overrides)
        reader = session().scan(task.query, plan.query, self.options, decimal, text)
        return self._copy(part, wid, task, reader)

    def _copy(self, part: FillingPart, wid: int, task: Task, reader: BatchReader | ConnectorxReader) -> int:
        with self.lock:
            self.readers[wid] = reader
        try:
            return copy_chunk(reader, part.writer, self.rows, part.quality, f"export {self.plan.name} {task.name}")
        finally:
            with self.lock:
                self.readers.pop(wid, None)
            reader.close()

    def _publish(self, part: FillingPart, worker: int) -> None:
        """Make the part visible, then mark its chunks done."""
        staged = part.writer.close()
        failpoints.hit("after_part_write")
        chunks = tuple(r.task.index for r in part.reads)
        parts = commit_parts(
            self.destination,
            staged,
            f"{self.stem}_chunk{part.first:05d}",
            self.plan.format.extension,
            self.queue.run_id,
            chunks=chunks,
        )
        self.queue.finish(part.reads, parts)
        if self.quality is not None and part.quality is not None:
            self.quality.merge(part.quality)
        self.progress.published(sum(p.bytes for p in parts), worker)

    def _announce(self, part: FillingPart) -> None:
        """A ``chunk`` event for each chunk of a published part, then the progress.

        A failure to say it (a closed events pipe) is no chunk's: charged to one, it would
        read and publish a chunk that is already published again.
        """
        try:
            for read in part.reads:
                self.events.emit("chunk", self.plan.name, **read.event())
            self._report()
        except Exception as e:  # noqa: BLE001 - the chunks are published; only their report is lost
            log.debug("export %s: reporting chunks failed: %s", self.plan.name, e)

    def _report(self) -> None:
        counter = self.progress
        self.events.emit("progress", self.plan.name, chunks_done=counter.chunks, rows=counter.rows, bytes=counter.bytes)


def copy_chunk(
    reader: BatchReader | ConnectorxReader,
    writer: PartWriter,
    rows: OutputRows | None,
    quality: QualityTracker | None,
    where: str,
) -> int:
    """Write every batch of ``reader`` (counted, checked, stamped) to ``writer``; the rows read."""
    count = 0
    try:
        while (batch := reader.next_batch()) is not None:
            record_batch = pa.record_batch(batch)
            count += record_batch.num_rows
            if quality is not None:
                quality.observe(record_batch)
            if rows is not None:
                rows.check_size(record_batch)
                rows.drift.observe(record_batch)
                record_batch = rows.stamp(record_batch)
            writer.write(record_batch)
        check_read(reader, count, where)
    except FastPathError as e:
        e.rows_written = count
        raise
    return count
