"""The threaded engine: one export split into chunks, read by ``parallel`` worker threads.

Each worker owns one source connection and reads its chunk with a bounded binary
COPY; the native reader decodes on its own thread and pyarrow encodes without the
GIL, so workers run truly in parallel. A chunk's parts are committed as soon as
the chunk is read; with ``chunk_checkpoint`` the chunk is then marked done in the
state store, so ``--resume`` reads only what is left. Each chunk is retried on its
own; a permanent error stops the run and names the chunk and its SQL.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rivet import failpoints
from rivet.destinations import Destination, DestinationSpec
from rivet.engine.commit import Publication, commit_parts
from rivet.engine.integrity import check_read
from rivet.errors import CancelledError, ChunkError, ConfigError
from rivet.events import Observer
from rivet.formats import open_part_writer
from rivet.formats.parquet import DictionaryChoice
from rivet.manifest import CommittedPart
from rivet.planning.chunks import plan_chunks
from rivet.progress import ChunkProgress
from rivet.redact import redact_text
from rivet.retry import Retrier, RetryClass, RetryPolicy
from rivet.runinfo import iso, part_stem, utc_now
from rivet.sources.base import scan_options
from rivet.sources.fastpath import ConnectorxReader, ConnectorxScanner, FastPathError, choose_engine, engine_label
from rivet.validate import part_problem

if TYPE_CHECKING:
    from rivet._native import BatchReader, MySession, PgSession

    Session = PgSession | MySession
    from rivet.planning.export import ExportPlan
    from rivet.results import ExportResult
    from rivet.state import StateStore
    from rivet.state.lease import ExportLease

log = logging.getLogger("rivet")


@dataclass
class Task:
    """A chunk being worked on."""

    index: int
    query: str
    label: str


@dataclass
class ChunkQueue:
    """Chunks to read, claimed one at a time: from memory, or from the state store."""

    run_id: str
    state: StateStore | None
    pending: list[Task] = field(default_factory=list)
    done: dict[int, tuple[list[CommittedPart], int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self) -> Task | None:
        """The next chunk, or None when all are taken."""
        if self.state is not None:
            row = self.state.claim_chunk(self.run_id, iso(utc_now()))
            return None if row is None else Task(row["chunk_index"], row["query"], row["label"])
        with self.lock:
            return self.pending.pop(0) if self.pending else None

    def finish(self, task: Task, parts: list[CommittedPart], rows: int) -> None:
        """Record a chunk whose parts are visible."""
        with self.lock:
            self.done[task.index] = (parts, rows)
        if self.state is not None:
            self.state.chunk_done(self.run_id, task.index, rows, [p.__dict__ for p in parts], iso(utc_now()))

    def fail(self, task: Task, error: BaseException) -> None:
        """Record a chunk that ran out of attempts."""
        if self.state is not None:
            self.state.chunk_failed(self.run_id, task.index, redact_text(str(error)), iso(utc_now()))

    def all_parts(self) -> list[CommittedPart]:
        """Every committed part, in chunk order (from the state store when checkpointed)."""
        if self.state is not None:
            return [CommittedPart(**p) for t in self.state.chunk_tasks(self.run_id) for p in t["parts"]]
        with self.lock:
            return [p for i in sorted(self.done) for p in self.done[i][0]]


# The smallest batch a worker's share of the memory budget may shrink to.
MIN_BATCH_BYTES = 2 * 1024 * 1024


def _scan_options(plan: ExportPlan, snapshot: str | None) -> dict[str, Any]:
    # The export's batch memory is shared by its workers, so memory stays bounded as parallel grows.
    return scan_options(
        plan.tuning,
        method="copy",
        batch_bytes=max(MIN_BATCH_BYTES, plan.tuning.batch_bytes // plan.parallel),
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
        queue = ChunkQueue(result.run_id, None, [Task(c.index, c.query, c.label) for c in chunks])
        return OpenedRun(queue, part_stem(plan.name, started), plan.destination, len(chunks), 0)
    assert state is not None
    existing = state.open_chunk_run(plan.name)
    hint = f"-e {plan.name}"
    if existing is not None and not resume:
        tasks = state.chunk_tasks(existing["run_id"])
        done = sum(t["status"] == "done" for t in tasks)
        raise ConfigError(
            f"export '{plan.name}' has an unfinished chunked run {existing['run_id']} ({done} of {len(tasks)} chunks "
            f"done): continue it with `rivet run --resume {hint}`, or discard it with `rivet state reset-chunks {hint}`"
        )
    if existing is None:
        if resume:
            log.info("export %s has no unfinished chunked run to resume: starting a new run", plan.name)
        chunks = plan_chunks(plan, session, schema)
        stem = part_stem(plan.name, started)
        state.create_chunk_run(
            result.run_id,
            plan.name,
            plan.fingerprint(),
            stem,
            iso(started),
            [(c.index, c.query, c.label) for c in chunks],
            plan.destination.url,
        )
        return OpenedRun(ChunkQueue(result.run_id, state), stem, plan.destination, len(chunks), 0)
    if existing["fingerprint"] != plan.fingerprint():
        raise ConfigError(
            f"export '{plan.name}': its query or chunking changed since run {existing['run_id']} started, so it "
            f"cannot be resumed; discard it with `rivet state reset-chunks {hint}` and run again"
        )
    # The run keeps writing where it started, even if {date} now names another folder.
    destination = plan.destination
    if existing["destination"]:
        destination = DestinationSpec(existing["destination"], plan.destination.storage_options)
    state.requeue_unfinished(existing["run_id"], iso(utc_now()))
    tasks = state.chunk_tasks(existing["run_id"])
    done = sum(t["status"] == "done" for t in tasks)
    log.info(
        "resuming run %s: %d of %d chunks done, %d to read", existing["run_id"], done, len(tasks), len(tasks) - done
    )
    return OpenedRun(ChunkQueue(existing["run_id"], state), existing["part_stem"], destination, len(tasks), done, True)


def _recheck_done_chunks(queue: ChunkQueue, destination: Destination) -> int:
    """Put back in the queue every done chunk whose parts are missing or changed; how many remain done."""
    assert queue.state is not None
    bad, done = [], 0
    for task in queue.state.chunk_tasks(queue.run_id):
        if task["status"] != "done":
            continue
        problems = [part_problem(destination, CommittedPart(**p)) for p in task["parts"]]
        found = [p for p in problems if p is not None]
        if found:
            log.warning("chunk %d %s is read again: %s", task["chunk_index"], task["label"], "; ".join(found))
            bad.append(task["chunk_index"])
        else:
            done += 1
    if bad:
        queue.state.requeue_chunks(queue.run_id, bad, iso(utc_now()))
    return done


class ChunkPool:
    """Worker threads that claim chunks until none are left or one fails for good."""

    def __init__(
        self,
        plan: ExportPlan,
        queue: ChunkQueue,
        destination: Destination,
        schema: pa.Schema,
        stem: str,
        snapshot: str | None,
        progress: ChunkProgress,
        events: Observer,
        fast: ConnectorxScanner | None = None,
    ) -> None:
        self.plan = plan
        self.fast = fast
        self.fallbacks = 0
        self.queue = queue
        self.destination = destination
        self.schema = schema
        self.stem = stem
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
                sessions.append(self.plan.source.session())  # type: ignore[union-attr]
            return sessions[0]

        while not self.abort.is_set():
            task = self.queue.claim()
            if task is None:
                return
            attempt = 0
            while True:
                attempt += 1
                try:
                    parts, rows = self._read_chunk(wid, session, task)
                    self.queue.finish(task, parts, rows)
                    self.progress.advance(rows)
                    self.events.emit(
                        "progress", self.plan.name, chunks_done=self.progress.chunks, rows=self.progress.rows
                    )
                    break
                except Exception as e:  # noqa: BLE001 - classified below; the run fails on the first permanent one
                    if self.abort.is_set():
                        return
                    verdict, wait = self.retrier.next_attempt(e, attempt, chunk=task.index, label=task.label)
                    if verdict.kind is RetryClass.RECONNECT:
                        sessions.clear()
                    if wait is None:
                        self.queue.fail(task, e)
                        self._failed(task, attempt, e)
                        return
                    if self.abort.wait(wait):
                        return

    def _failed(self, task: Task, attempts: int, error: BaseException) -> None:
        with self.lock:
            if self.error is None and not isinstance(error, CancelledError):
                self.error = ChunkError(
                    f"chunk {task.index} {task.label} failed after {attempts} attempt(s): {error}\n  SQL: {task.query}",
                    cause=error,
                )
        self._stop()

    def _read_chunk(self, wid: int, session: Callable[[], Session], task: Task) -> tuple[list[CommittedPart], int]:
        plan = self.plan
        if self.fast is not None:
            try:
                return self._stage(wid, task, self.fast.open(task.query))
            except FastPathError as e:
                with self.lock:
                    self.fallbacks += 1
                log.warning("chunk %d %s: %s; the native reader reads it", task.index, task.label, e)
        decimal, text = plan.source.split_overrides(plan.overrides)  # type: ignore[union-attr]
        reader = session().scan(task.query, plan.query, self.options, decimal, text)
        return self._stage(wid, task, reader)

    def _stage(self, wid: int, task: Task, reader: BatchReader | ConnectorxReader) -> tuple[list[CommittedPart], int]:
        """Write every batch of ``reader`` into staged parts, then commit them as this chunk's parts."""
        plan = self.plan
        with self.lock:
            self.readers[wid] = reader
        key = f"{self.queue.run_id}-c{task.index}"
        writer = open_part_writer(
            plan.format,
            self.schema,
            lambda n: self.destination.staging_path(key, n),
            plan.max_file_size,
            share=plan.parallel,
            dictionary=self.dictionary,
        )
        try:
            while (batch := reader.next_batch()) is not None:
                writer.write(pa.record_batch(batch))
            staged = writer.close()
            check_read(reader, sum(p.rows for p in staged), f"export {plan.name} chunk {task.index} {task.label}")
        except BaseException:
            writer.abort()
            raise
        finally:
            with self.lock:
                self.readers.pop(wid, None)
            reader.close()
        failpoints.hit("after_part_write")
        parts = commit_parts(
            self.destination,
            staged,
            f"{self.stem}_chunk{task.index:05d}",
            plan.format.extension,
            self.queue.run_id,
        )
        return parts, sum(p.rows for p in parts)


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
    coordinator = plan.source.session()  # type: ignore[union-attr]
    snapshot = None
    if plan.consistent:
        # Workers read under this transaction's snapshot; it stays open until they finish.
        coordinator.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = coordinator.query("SELECT pg_export_snapshot()")[0][0]
    decimal, text = plan.source.split_overrides(plan.overrides)  # type: ignore[union-attr]
    schema = pa.schema(coordinator.describe(plan.query, decimal, text))
    result.schema = schema
    choice = choose_engine(plan, schema, chunked=True)
    log.info("export %s reads with the %s reader (%s)", plan.name, choice.engine, choice.reason)
    fast = ConnectorxScanner.for_plan(plan, schema) if choice.engine == "connectorx" else None
    run = _open_queue(plan, state, coordinator, schema, result, started, resume)
    queue = run.queue
    destination = Destination(run.destination)
    destination.prepare(plan.name, exclusive=lease is not None)
    try:
        done = _recheck_done_chunks(queue, destination) if run.resumed else run.done
        destination.withdraw_success()
        events = observer or Observer()
        events.emit("progress_init", plan.name, total_chunks=run.total, done_chunks=done)
        # The terminal display is for an export run on its own; a parent draws its own.
        with ChunkProgress(plan.name, run.total, done, enabled=observer is None) as progress:
            pool = ChunkPool(plan, queue, destination, schema, run.stem, snapshot, progress, events, fast)
            try:
                pool.run()
            except BaseException:
                if queue.state is None:
                    # Nothing can resume these parts: take them back so nothing looks complete.
                    destination.remove([p.name for p in queue.all_parts()])
                raise
            finally:
                result.engine = engine_label(choice.engine, pool.fallbacks)
        publication = Publication(plan, destination, state, result, started, append=False, lease=lease)
        checkpoints = queue.state
        publication.publish(
            schema,
            queue.all_parts(),
            on_commit=partial(checkpoints.finish_chunk_run, queue.run_id, iso(utc_now())) if checkpoints else None,
            # A checkpointed run keeps its parts for --resume; others take them back.
            remove_on_failure=checkpoints is None,
        )
    finally:
        destination.cleanup()
        del coordinator
