"""Opening a chunked run: a fresh chunk queue, or the checkpointed one of a run to resume.

A resumed run's published parts are checked against the destination before anything
is read again.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rivet.core.runinfo import from_iso, iso, part_stem, utc_now
from rivet.errors import ConfigError, SchemaDriftError
from rivet.execution.checkpoints import rebuilt_queries, run_location
from rivet.execution.chunkqueue import ChunkQueue, Task
from rivet.execution.drift import columns_of, compare
from rivet.execution.keymarks import check_resumed, planned_mark
from rivet.execution.results import ExportResult
from rivet.output.manifest import part_from_record
from rivet.output.quality import QualityTracker, written_batches
from rivet.output.validate import part_problem
from rivet.plan.chunks import plan_chunks
from rivet.plan.keyset import KeyWindow, keyset_of, window_of
from rivet.storage.destinations import Destination, DestinationSpec

if TYPE_CHECKING:
    from rivet.plan.export import ExportPlan
    from rivet.sources.base import Session
    from rivet.state import StateStore

log = logging.getLogger("rivet")


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
    # keyset_incremental: the keys the run reads, and its chunk of NULL keys (a query's), if any.
    window: KeyWindow | None = None
    null_keys: int | None = None

    def with_window(self, plan: ExportPlan, schema: pa.Schema, bounds: list[Any]) -> OpenedRun:
        """This run with the keyset_incremental window its chunks' ``bounds`` (in index order) read."""
        if plan.keyset_incremental:
            assert plan.chunking is not None
            self.window = window_of(bounds, keyset_of(schema, plan.chunking.keys, plan.source.dialect))
            self.null_keys = next((i for i, b in enumerate(bounds) if b and b[0] == "keyset_nulls"), None)
        return self


def open_queue(
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
        chunks = plan_chunks(plan, session, schema, planned_mark(plan, state))
        queue = ChunkQueue.in_memory(result.run_id, [Task(c.index, c.query, c.label) for c in chunks])
        opened = OpenedRun(queue, part_stem(plan.name, started), plan.destination, len(chunks), 0, started)
        return opened.with_window(plan, schema, [c.bounds for c in chunks])
    assert state is not None
    existing = state.open_chunk_run(plan.key)
    if existing is not None and not resume:
        tasks = state.chunk_tasks(existing.run_id)
        done = sum(t.status == "done" for t in tasks)
        raise ConfigError(
            f"export '{plan.name}' has an unfinished chunked run {existing.run_id} ({done} of {len(tasks)} chunks "
            f"done): continue it with `{plan.command('run --resume')}`, or discard it with "
            f"`{plan.command('state reset-chunks')}`"
        )
    if existing is None:
        if resume:
            log.info("export %s has no unfinished chunked run to resume: starting a new run", plan.name)
        chunks = plan_chunks(plan, session, schema, planned_mark(plan, state))
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
        return OpenedRun(queue, stem, plan.destination, len(chunks), 0, started).with_window(
            plan, schema, [c.bounds for c in chunks]
        )
    if existing.fingerprint != plan.fingerprint():
        raise ConfigError(
            f"export '{plan.name}': its query or chunking changed since run {existing.run_id} started, so it "
            f"cannot be resumed; discard it with `{plan.command('state reset-chunks')}` and run again"
        )
    destination, stem = run_location(plan, existing)
    state.requeue_unfinished(existing.run_id, iso(utc_now()))
    tasks = state.chunk_tasks(existing.run_id)
    queries = rebuilt_queries(plan, session, schema, existing.run_id, tasks)
    done = sum(t.status == "done" for t in tasks)
    log.info("resuming run %s: %d of %d chunks done, %d to read", existing.run_id, done, len(tasks), len(tasks) - done)
    queue = ChunkQueue(existing.run_id, state, queries=queries)
    opened = OpenedRun(queue, stem, destination, len(tasks), done, from_iso(existing.started_at), resumed=True)
    opened.with_window(plan, schema, [t.bounds for t in sorted(tasks, key=lambda t: int(t.chunk_index))])
    if opened.window is not None:
        check_resumed(plan, schema, state, opened.window, existing.run_id)
    return opened


def recheck_done_chunks(queue: ChunkQueue, destination: Destination) -> int:
    """Put back in the queue every done chunk whose parts are missing or changed; how many remain done."""
    assert queue.state is not None
    bad, done = [], 0
    problems: dict[str, str | None] = {}  # by part name: the chunks of one part share its verdict
    for task in queue.state.chunk_tasks(queue.run_id):
        if task.status != "done":
            continue
        for record in task.parts:
            if record["name"] not in problems:
                problems[record["name"]] = part_problem(destination, part_from_record(record))
        found = [problem for r in task.parts if (problem := problems[r["name"]]) is not None]
        if found:
            log.warning("chunk %d %s is read again: %s", task.chunk_index, task.label, "; ".join(found))
            bad.append(task.chunk_index)
        else:
            done += 1
    if bad:
        queue.state.requeue_chunks(queue.run_id, bad, iso(utc_now()))
    return done


def count_published(
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


def check_published_schema(plan: ExportPlan, queue: ChunkQueue, destination: Destination, schema: pa.Schema) -> None:
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


def abandon(queue: ChunkQueue, destination: Destination, success: bytes | None = None) -> None:
    """After a failed check: take back every part of the run and close it, so nothing resumes it.

    ``success``: the ``_SUCCESS`` the run withdrew, put back: the output before it is whole again.
    """
    destination.remove([p.name for p in queue.all_parts()])
    if success is not None:
        destination.write_file(destination.spec.success_name, success)
    if queue.state is not None:
        queue.state.fail_chunk_run(queue.run_id, iso(utc_now()))
