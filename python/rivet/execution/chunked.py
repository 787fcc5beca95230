"""The threaded engine: one export split into chunks, read by ``parallel`` worker threads.

Each worker owns one source connection and reads its chunks with bounded binary
COPYs; the native reader decodes on its own thread and pyarrow encodes without the
GIL, so workers run truly in parallel. A worker writes the chunks it reads into one
part and publishes it near ``max_file_size`` (512 MiB by default), so a run leaves
few large files rather than one per chunk. A chunk is done once its part is
published; with ``chunk_checkpoint`` that is recorded in the state store, so
``--resume`` reads only the chunks of parts that were never published. A failed
read is retried on its own; a permanent error stops the run and names the chunk
and its SQL.
"""

from __future__ import annotations

import datetime as dt
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
from rivet.core.runinfo import current_rss_bytes, from_iso, iso, part_stem, utc_now
from rivet.errors import CancelledError, ChunkError, ConfigError, QualityError, SchemaDriftError
from rivet.execution.checkpoints import rebuilt_queries, run_location
from rivet.execution.chunkqueue import ChunkQueue, ChunkRead, Task
from rivet.execution.commit import Publication, commit_parts
from rivet.execution.counter import ChunkCounter
from rivet.execution.drift import columns_of, compare
from rivet.execution.integrity import check_read
from rivet.execution.results import ChunkRows, ExportResult
from rivet.execution.rows import OutputRows
from rivet.output import open_part_writer
from rivet.output.base import PartWriter
from rivet.output.manifest import part_from_record
from rivet.output.parquet import DictionaryChoice
from rivet.output.quality import QualityTracker, written_batches
from rivet.output.validate import part_problem
from rivet.plan.chunks import plan_chunks
from rivet.plan.reader import choose_engine, connectorx_scanner
from rivet.sources.base import scan_options
from rivet.sources.connectorx import ConnectorxReader, ConnectorxScanner, FastPathError, engine_label
from rivet.storage.destinations import Destination, DestinationSpec, open_destination

if TYPE_CHECKING:
    from rivet._native import BatchReader
    from rivet.execution.cluster import ClusterChunkPool
    from rivet.plan.export import ExportPlan
    from rivet.sources.base import Session
    from rivet.state import StateStore
    from rivet.state.lease import ExportLease

log = logging.getLogger("rivet")


# The smallest batch a worker's share of the memory budget may shrink to (max_batch_memory_mb aside).
MIN_BATCH_BYTES = 2 * 1024 * 1024
MAX_BATCH_BYTES = 1 << 30


def _scan_options(plan: ExportPlan, snapshot: str | None) -> dict[str, Any]:
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


@dataclass
class OpenedRun:
    """A chunked run ready for the worker pool: its queue, part names, destination and counts."""

    queue: ChunkQueue
    stem: str
    destination: DestinationSpec
    total: int
    done: int
    started: dt.datetime  # when the run began: a resumed run keeps its first start
    resumed: bool = False


def _open_queue(
    plan: ExportPlan,
    state: StateStore | None,
    session: Session,
    schema: pa.Schema,
    result: ExportResult,
    started: dt.datetime,
    resume: bool,
) -> OpenedRun:
    """The chunks to read: planned now, or the unfinished ones of a checkpointed run."""
    checkpointed = plan.checkpoint and state is not None
    if resume and not checkpointed:
        raise ConfigError(f"export '{plan.name}': --resume needs chunk_checkpoint: true")
    if not checkpointed:
        chunks = plan_chunks(plan, session, schema)
        queue = ChunkQueue.in_memory(result.run_id, [Task(c.index, c.query, c.label) for c in chunks])
        return OpenedRun(queue, part_stem(plan.name, started), plan.destination, len(chunks), 0, started)
    assert state is not None
    existing = state.open_chunk_run(plan.key)
    if existing is not None and not resume:
        tasks = state.chunk_tasks(existing["run_id"])
        done = sum(t["status"] == "done" for t in tasks)
        raise ConfigError(
            f"export '{plan.name}' has an unfinished chunked run {existing['run_id']} ({done} of {len(tasks)} chunks "
            f"done): continue it with `{plan.command('run --resume')}`, or discard it with "
            f"`{plan.command('state reset-chunks')}`"
        )
    if existing is None:
        if resume:
            log.info("export %s has no unfinished chunked run to resume: starting a new run", plan.name)
        chunks = plan_chunks(plan, session, schema)
        stem = part_stem(plan.name, started)
        state.create_chunk_run(
            result.run_id,
            plan.key,
            plan.fingerprint(),
            stem,
            iso(started),
            [(c.index, c.query, c.label, c.bounds) for c in chunks],
            plan.destination.url,
        )
        queue = ChunkQueue(result.run_id, state, queries={c.index: c.query for c in chunks})
        return OpenedRun(queue, stem, plan.destination, len(chunks), 0, started)
    if existing["fingerprint"] != plan.fingerprint():
        raise ConfigError(
            f"export '{plan.name}': its query or chunking changed since run {existing['run_id']} started, so it "
            f"cannot be resumed; discard it with `{plan.command('state reset-chunks')}` and run again"
        )
    destination, stem = run_location(plan, existing)
    state.requeue_unfinished(existing["run_id"], iso(utc_now()))
    tasks = state.chunk_tasks(existing["run_id"])
    queries = rebuilt_queries(plan, session, schema, existing["run_id"], tasks)
    done = sum(t["status"] == "done" for t in tasks)
    log.info(
        "resuming run %s: %d of %d chunks done, %d to read", existing["run_id"], done, len(tasks), len(tasks) - done
    )
    queue = ChunkQueue(existing["run_id"], state, queries=queries)
    return OpenedRun(queue, stem, destination, len(tasks), done, from_iso(existing["started_at"]), resumed=True)


def _recheck_done_chunks(queue: ChunkQueue, destination: Destination) -> int:
    """Put back in the queue every done chunk whose parts are missing or changed; how many remain done."""
    assert queue.state is not None
    bad, done = [], 0
    problems: dict[str, str | None] = {}  # by part name: the chunks of one part share its verdict
    for task in queue.state.chunk_tasks(queue.run_id):
        if task["status"] != "done":
            continue
        for record in task["parts"]:
            if record["name"] not in problems:
                problems[record["name"]] = part_problem(destination, part_from_record(record))
        found = [problem for r in task["parts"] if (problem := problems[r["name"]]) is not None]
        if found:
            log.warning("chunk %d %s is read again: %s", task["chunk_index"], task["label"], "; ".join(found))
            bad.append(task["chunk_index"])
        else:
            done += 1
    if bad:
        queue.state.requeue_chunks(queue.run_id, bad, iso(utc_now()))
    return done


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
        self.options = _scan_options(plan, snapshot)
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
                sessions.append(spare or self.plan.source.session())  # type: ignore[union-attr]
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
                        try:
                            rows = self._read_into(part, wid, session, task)
                        finally:
                            with self.lock:
                                self.reading -= 1
                        part.reads.append(ChunkRead(task, rows))
                        last = task.index
                        self.progress.advance(rows)
                        self.progress.filling(wid, part.writer.bytes_written())
                        self._report()
                    # Published when full, when the queue is empty, or, checkpointed, when its chunks have
                    # waited long enough: an interrupted run keeps all but the last stretch of work.
                    full = part is not None and not part.has_room(self.part_bytes)
                    if part is not None and (task is None or full or part.held_for(self.checkpoint_every_s)):
                        self._publish(part, wid)
                        part = None
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
        decimal, text = plan.source.split_overrides(plan.overrides)  # type: ignore[union-attr]
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
        self._report()

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


@dataclass
class ChunkSource:
    """What the workers of a chunked read share: the coordinator's session and snapshot, the schema, the reader."""

    plan: ExportPlan
    coordinator: Session | None  # plans the chunks; then holds the snapshot open until the workers finish
    snapshot: str | None
    schema: pa.Schema  # the source's columns, before meta columns
    engine: str
    fast: ConnectorxScanner | None

    @classmethod
    def open(cls, plan: ExportPlan) -> ChunkSource:
        """Connect, export a snapshot when the plan is consistent, describe the query, choose the reader."""
        if plan.cluster is not None:
            from rivet.execution.cluster import check_transport

            check_transport(plan)
        coordinator = plan.source.session()  # type: ignore[union-attr]
        snapshot = None
        if plan.consistent:
            # Workers read under this transaction's snapshot; it stays open until they finish.
            coordinator.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = coordinator.query("SELECT pg_export_snapshot()")[0][0]
        decimal, text = plan.source.split_overrides(plan.overrides)  # type: ignore[union-attr]
        schema = pa.schema(coordinator.describe(plan.query, decimal, text))
        if plan.cluster is not None:
            from rivet.execution.cluster import ENGINE

            log.info("export %s reads its chunks on the Dask cluster at %s", plan.name, plan.cluster.address)
            return cls(plan, coordinator, snapshot, schema, ENGINE, None)
        choice = choose_engine(plan, schema, chunked=True, channel=coordinator.channel)
        log.info("export %s reads with the %s reader (%s)", plan.name, choice.engine, choice.reason)
        fast = connectorx_scanner(plan, schema, coordinator.channel) if choice.engine == "connectorx" else None
        return cls(plan, coordinator, snapshot, schema, choice.engine, fast)

    @property
    def planner(self) -> Session:
        """The connection that plans the chunks (until a worker takes it)."""
        assert self.coordinator is not None, "the planning connection was handed to the workers"
        return self.coordinator

    def take_planner(self) -> Session | None:
        """The planning connection, for a worker to read with; None while it holds the workers' snapshot.

        Handed on rather than closed and opened again, so ``parallel: N`` holds N connections
        to the source at most, even against a per-role connection limit that a backend still
        exiting would count.
        """
        if self.snapshot is not None:
            return None
        planner, self.coordinator = self.coordinator, None
        return planner

    def pool(
        self,
        queue: ChunkQueue,
        destination: Destination,
        output_schema: pa.Schema,
        stem: str,
        progress: ChunkCounter,
        events: Observer,
        rows: OutputRows,
        planner: Session | None = None,
    ) -> ChunkPool | ClusterChunkPool:
        """The worker pool that reads ``queue`` into parts named after ``stem``: threads, or a Dask cluster.

        ``planner``, the planning connection, goes to the first thread that reads natively;
        the cluster's tasks connect on their workers, so there it is closed.
        """
        if self.plan.cluster is not None:
            from rivet.execution.cluster import ClusterChunkPool

            return ClusterChunkPool(
                self.plan.cluster,
                self.plan,
                queue,
                destination,
                output_schema,
                stem,
                _scan_options(self.plan, self.snapshot),
                progress,
                events,
                rows,
                self.plan.max_file_size or DEFAULT_PART_BYTES,
            )
        spare = planner if self.fast is None else None  # connectorx connects for itself
        return ChunkPool(
            self.plan, queue, destination, output_schema, stem, self.snapshot, progress, events, self.fast, rows, spare
        )


def _count_published(
    plan: ExportPlan, schema: pa.Schema, quality: QualityTracker, queue: ChunkQueue, destination: Destination
) -> None:
    """A resumed run's quality gates count the parts published before it stopped, read back."""
    published = queue.all_parts()
    if not published:
        return
    if plan.format.kind != "parquet":
        raise ConfigError(
            f"export '{plan.name}': --resume with quality gates reads the published parts back, which "
            f"needs Parquet output; discard the run with `{plan.command('state reset-chunks')}` and run again"
        )
    quality.observe_all(written_batches(destination, published, schema))


def _check_published_schema(plan: ExportPlan, queue: ChunkQueue, destination: Destination, schema: pa.Schema) -> None:
    """A resumed run must write what its published parts hold: one manifest, one schema."""
    published = queue.all_parts()
    if not published or plan.format.kind != "parquet":
        return
    import pyarrow.parquet as pq

    with destination.open(published[0].name) as f:
        written = pq.read_schema(f)
    if not written.equals(schema, check_metadata=False):
        drift = compare(columns_of(written), columns_of(schema))
        raise SchemaDriftError(
            f"export '{plan.name}': the output changed since run {queue.run_id} started ({drift.describe()}); "
            f"its published parts hold the old columns. Discard it with `{plan.command('state reset-chunks')}` "
            "and run again"
        )


def _abandon(queue: ChunkQueue, destination: Destination, success: bytes | None = None) -> None:
    """After a failed check: take back every part of the run and close it, so nothing resumes it.

    ``success``: the ``_SUCCESS`` the run withdrew, put back: the output before it is whole again.
    """
    destination.remove([p.name for p in queue.all_parts()])
    if success is not None:
        destination.write_file(destination.spec.success_name, success)
    if queue.state is not None:
        queue.state.fail_chunk_run(queue.run_id, iso(utc_now()))


def _skip(
    plan: ExportPlan, queue: ChunkQueue, destination: Destination, result: ExportResult, success: bytes | None
) -> None:
    """``skip_empty`` and no rows: nothing of this run stays.

    Its (empty) parts are taken back, its checkpoints closed, and the ``_SUCCESS`` it withdrew
    put back: the run before's parts and manifest are untouched.
    """
    destination.remove([p.name for p in queue.all_parts()])
    if success is not None:
        destination.write_file(destination.spec.success_name, success)
    if queue.state is not None:
        queue.state.finish_chunk_run(queue.run_id, iso(utc_now()))
    log.info("export %s read no rows: skipped (skip_empty), nothing published", plan.name)
    result.status = "skipped"


def run_chunked(
    plan: ExportPlan,
    state: StateStore | None,
    result: ExportResult,
    started: dt.datetime,
    *,
    resume: bool = False,
    observer: Observer | None = None,
    lease: ExportLease | None = None,
) -> None:
    """Plan (or resume) the chunks, read them with the worker pool, then publish."""
    source = ChunkSource.open(plan)
    schema = source.schema
    run = _open_queue(plan, state, source.planner, schema, result, started, resume)
    planner = source.take_planner()
    queue = run.queue
    events = observer or Observer()
    rows = OutputRows.for_run(plan, state, events, run.started)
    destination = open_destination(run.destination)
    destination.prepare(plan.name, exclusive=lease is not None, spared_run=lease.spared_run if lease else None)
    try:
        try:
            output_schema = result.schema = rows.open(schema, destination)
        except Exception as e:
            # Drift closes the run; any other refusal closes a run that has read nothing yet (so
            # fixing the config needs no reset), and leaves a resumable one to resume.
            if isinstance(e, SchemaDriftError) or not run.resumed:
                _abandon(queue, destination)
            raise
        done = _recheck_done_chunks(queue, destination) if run.resumed else run.done
        if run.resumed:
            _check_published_schema(plan, queue, destination, output_schema)
        if rows.quality is not None and run.resumed:
            _count_published(plan, schema, rows.quality, queue, destination)
        success = destination.read_file(destination.spec.success_name)
        destination.withdraw_success()
        events.emit("progress_init", plan.name, total_chunks=run.total, done_chunks=done)
        pool = source.pool(queue, destination, output_schema, run.stem, ChunkCounter(done), events, rows, planner)
        del planner  # the pool's now: a worker reads with it, or it closes with the pool
        try:
            pool.run()
        except BaseException:
            if queue.state is None:
                # Nothing can resume these parts: take them back so nothing looks complete.
                destination.remove([p.name for p in queue.all_parts()])
            raise
        finally:
            result.engine = engine_label(source.engine, pool.fallbacks)
        result.chunks = [ChunkRows(*c) for c in queue.chunk_rows()]
        try:
            rows.finish()
        except QualityError:
            _abandon(queue, destination, success)
            raise
        result.schema_drift = rows.drift.drift.to_dict() if rows.drift.drift else None
        if plan.skip_empty and sum(c.rows for c in result.chunks) == 0:
            _skip(plan, queue, destination, result, success)
            return
        publication = Publication(plan, destination, state, result, started, append=False, lease=lease)
        checkpoints = queue.state

        def on_commit() -> None:
            if checkpoints is not None:
                checkpoints.finish_chunk_run(queue.run_id, iso(utc_now()))
            rows.drift.commit(result.run_id, iso(utc_now()))

        publication.publish(
            output_schema,
            queue.all_parts(),
            on_commit=on_commit,
            # A checkpointed run keeps its parts for --resume; others take them back.
            remove_on_failure=checkpoints is None,
        )
    finally:
        destination.cleanup()
        del source  # the snapshot's transaction ends with its session
