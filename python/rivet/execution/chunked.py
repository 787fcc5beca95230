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

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from rivet.core.events import Observer
from rivet.core.runinfo import iso, utc_now
from rivet.errors import DataError, QualityError, SchemaDriftError
from rivet.execution.chunkqueue import ChunkQueue
from rivet.execution.commit import Publication
from rivet.execution.counter import ChunkCounter
from rivet.execution.keymarks import manifest_entry, move_mark
from rivet.execution.results import ChunkRows, ExportResult
from rivet.execution.rows import OutputRows
from rivet.plan.reader import choose_engine, connectorx_scanner
from rivet.sources.connectorx import ConnectorxScanner, engine_label
from rivet.storage.destinations import Destination, open_destination

if TYPE_CHECKING:
    from rivet.execution.cluster import Cluster, ClusterChunkPool
    from rivet.output.tables import TableCheck
    from rivet.plan.export import ExportPlan
    from rivet.sources.base import Session
    from rivet.state import StateStore
    from rivet.state.lease import ExportLease
from rivet.execution.pool import DEFAULT_PART_BYTES, ChunkPool, chunk_scan_options
from rivet.execution.resume import abandon, check_published_schema, count_published, open_queue, recheck_done_chunks

log = logging.getLogger("rivet")


@dataclass
class ChunkSource:
    """What the workers of a chunked read share: the coordinator's session and snapshot, the schema, the reader."""

    plan: ExportPlan
    coordinator: Session | None  # plans the chunks; then holds the snapshot open until the workers finish
    snapshot: str | None
    schema: pa.Schema  # the source's columns, before meta columns
    engine: str
    fast: ConnectorxScanner | None
    cluster: Cluster | None = None  # the Dask cluster whose workers read the chunks; None: threads here

    @classmethod
    def open(cls, plan: ExportPlan, cluster: Cluster | None = None) -> ChunkSource:
        """Connect, export a snapshot when the plan is consistent, describe the query, choose the reader."""
        if cluster is not None:
            from rivet.execution.cluster import check_transport

            check_transport(plan, cluster)
        coordinator = plan.server.session()
        snapshot = None
        if plan.consistent:
            # Workers read under this transaction's snapshot; it stays open until they finish.
            snapshot = plan.source.catalog.export_snapshot(coordinator)
        decimal, text = plan.server.split_overrides(plan.overrides)
        schema = pa.schema(coordinator.describe(plan.query, decimal, text))
        if cluster is not None:
            from rivet.execution.cluster import ENGINE

            log.info("export %s reads its chunks on the Dask cluster at %s", plan.name, cluster.address)
            return cls(plan, coordinator, snapshot, schema, ENGINE, None, cluster)
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
        if self.cluster is not None:
            from rivet.execution.cluster import ClusterChunkPool

            return ClusterChunkPool(
                self.cluster,
                self.plan,
                queue,
                destination,
                output_schema,
                stem,
                chunk_scan_options(self.plan, self.snapshot),
                progress,
                events,
                rows,
                self.plan.max_file_size or DEFAULT_PART_BYTES,
            )
        spare = planner if self.fast is None else None  # connectorx connects for itself
        return ChunkPool(
            self.plan, queue, destination, output_schema, stem, self.snapshot, progress, events, self.fast, rows, spare
        )


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


def _refuse_null_keys(
    plan: ExportPlan,
    result: ExportResult,
    null_keys: int | None,
    queue: ChunkQueue,
    destination: Destination,
    success: bytes | None,
) -> None:
    """A keyset_incremental query's rows with a NULL key fail the run: no mark is ever after them."""
    found = sum(c.rows for c in result.chunks if c.index == null_keys) if null_keys is not None else 0
    if found:
        abandon(queue, destination, success)
        raise DataError(
            f"export '{plan.name}': {found} row(s) of the query have a NULL in the key "
            f"({', '.join(plan.chunking.keys if plan.chunking else ())}); keyset_incremental reads the keys after "
            "the last run's, and a NULL is never after it, so they would be read again by every run. Filter them "
            "out in the query (or read them in another export), or drop keyset_incremental"
        )


def run_chunked(
    plan: ExportPlan,
    state: StateStore | None,
    result: ExportResult,
    started: dt.datetime,
    *,
    resume: bool = False,
    observer: Observer | None = None,
    lease: ExportLease | None = None,
    table_check: TableCheck | None = None,
    cluster: Cluster | None = None,
) -> None:
    """Plan (or resume) the chunks, read them with the worker pool (or ``cluster``), then publish."""
    source = ChunkSource.open(plan, cluster)
    schema = source.schema
    run = open_queue(plan, state, source.planner, schema, result, started, resume)
    planner = source.take_planner()
    queue = run.queue
    events = observer or Observer()
    rows = OutputRows.for_run(plan, state, events, run.started, table_check)
    destination = open_destination(run.destination)
    destination.prepare(plan.name, exclusive=lease is not None, spared_run=lease.spared_run if lease else None)
    try:
        try:
            output_schema = result.schema = rows.open(schema, destination)
        except Exception as e:
            # Drift closes the run; any other refusal closes a run that has read nothing yet (so
            # fixing the config needs no reset), and leaves a resumable one to resume.
            if isinstance(e, SchemaDriftError) or not run.resumed:
                abandon(queue, destination)
            raise
        done = recheck_done_chunks(queue, destination) if run.resumed else run.done
        if run.resumed:
            check_published_schema(plan, queue, destination, output_schema)
        if rows.quality is not None and run.resumed:
            count_published(plan, schema, rows.quality, queue, destination)
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
            abandon(queue, destination, success)
            raise
        result.schema_drift = rows.drift.drift.to_dict() if rows.drift.drift else None
        _refuse_null_keys(plan, result, run.null_keys, queue, destination, success)
        if plan.skip_empty and sum(c.rows for c in result.chunks) == 0:
            _skip(plan, queue, destination, result, success)
            return
        # A keyset_incremental run after a mark adds to the parts before; one that read every key replaces them.
        appending = run.window is not None and run.window.mark is not None
        publication = Publication(
            plan,
            destination,
            state,
            result,
            started,
            append=appending,
            lease=lease,
            extra=manifest_entry(plan, run.window) if run.window is not None else {},
            table_check=table_check,
        )
        checkpoints = queue.state

        def on_commit() -> None:
            if checkpoints is not None:
                checkpoints.finish_chunk_run(queue.run_id, iso(utc_now()))
            rows.drift.commit(result.run_id, iso(utc_now()))
            if run.window is not None:
                assert state is not None, "a keyset_incremental run is opened with a state store"
                move_mark(plan, schema, state, run.window, result.run_id)

        # A resumed run's parts were written under the run it resumes, which never committed: they
        # are this run's, or the next appending run would drop them from the manifest.
        parts = [dataclasses.replace(p, run_id=result.run_id) for p in queue.all_parts()]
        if appending and sum(c.rows for c in result.chunks) == 0:
            # Nothing after the mark: the runs before stay whole, with no empty part beside them.
            destination.remove([p.name for p in parts])
            parts, result.status = [], "empty"
        publication.publish(
            output_schema,
            parts,
            on_commit=on_commit,
            # A checkpointed run keeps its parts for --resume; others take them back.
            remove_on_failure=checkpoints is None,
        )
    finally:
        destination.cleanup()
        del source  # the snapshot's transaction ends with its session
