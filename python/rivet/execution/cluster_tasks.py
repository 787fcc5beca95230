"""What a Dask worker runs for one chunk.

It opens its own connection (under the exported snapshot on PostgreSQL), reads the chunk
natively, writes its part under a name no other attempt uses, and returns the part's
rows, bytes and SHA-256 to the coordinator.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rivet.core.events import Observer
from rivet.core.runinfo import iso_us, utc_now
from rivet.errors import CancelledError
from rivet.execution.chunkqueue import Task
from rivet.execution.commit import commit_parts
from rivet.execution.drift import DriftCheck
from rivet.execution.rows import OutputRows
from rivet.output import open_part_writer
from rivet.output.parquet import DictionaryChoice
from rivet.storage import staging
from rivet.storage.destinations import Destination, DestinationSpec, open_destination

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.output.manifest import CommittedPart
    from rivet.output.meta import Stamp
    from rivet.output.quality import QualityTracker
    from rivet.plan.export import ExportPlan


def rivet_version() -> str:
    """The rivet version installed where this runs (asked of each worker)."""
    from rivet.core.version import __version__

    return __version__


@dataclass(frozen=True)
class ChunkJob:
    """What every task of one run needs: the plan and where and how to write."""

    plan: ExportPlan  # without its cluster
    schema: pa.Schema  # the output's
    destination: DestinationSpec
    stem: str
    run_id: str
    options: dict[str, Any]
    stamp: Stamp
    quality: QualityTracker | None  # empty: each task counts its own rows in a copy
    keep_widths: bool
    part_bytes: int
    semaphore: str  # the name of the distributed.Semaphore bounding connections to the source


@dataclass
class ChunkOutcome:
    """What one task read and wrote."""

    index: int
    rows: int
    parts: list[CommittedPart]
    quality: QualityTracker | None
    widths: dict[str, int]
    worker: str
    # When the read began and how long it took (empty from a worker of an older rivet).
    started: str = ""
    read_s: float = 0.0


def read_chunk(job: ChunkJob, task: Task, delay_s: float) -> ChunkOutcome:
    """On a worker: read one chunk into its own part at the destination (not yet published)."""
    from distributed import Semaphore, get_worker

    if delay_s > 0:
        time.sleep(delay_s)  # the backoff before a retry, spent on the worker
    # Made here, in the task, so that it is bound to this worker and renews its lease while the
    # chunk is read (one unpickled outside a task never does, and its lease would expire).
    semaphore = Semaphore(max_leases=job.plan.parallel, name=job.semaphore)
    try:
        with semaphore:
            return _read_chunk(job, task)
    finally:
        if (renewal := getattr(semaphore, "refresh_callback", None)) is not None:
            get_worker().loop.add_callback(renewal.stop)


def _read_chunk(job: ChunkJob, task: Task) -> ChunkOutcome:
    """Inside the semaphore: the chunk read and its part committed, unless the run gave it up."""
    if _cancelled():
        raise CancelledError(f"export {job.plan.name} {task.name}: the run stopped")
    # The credentials come from this worker's own environment: the task carries none.
    plan = replace(job.plan, source=job.plan.source.with_secrets())  # type: ignore[union-attr]
    job = replace(job, plan=plan)
    rows = OutputRows(plan, job.stamp, DriftCheck(plan, None, Observer(), keep_widths=job.keep_widths))
    quality = job.quality.part() if job.quality is not None else None
    destination = open_destination(job.destination.with_secrets())
    destination.prepare()
    started, clock = iso_us(utc_now()), time.perf_counter()
    try:
        count, staged = _write_chunk(job, task, rows, quality, destination)
        read_s = time.perf_counter() - clock
        if _cancelled():
            for part in staged:
                staging.remove(part.path)
            raise CancelledError(f"export {plan.name} {task.name}: the run stopped")
        parts = commit_parts(
            destination,
            staged,
            f"{job.stem}_chunk{task.index:05d}_{secrets.token_hex(4)}",
            plan.format.extension,
            job.run_id,
            chunks=(task.index,),
        )
    finally:
        destination.cleanup()
    return ChunkOutcome(task.index, count, parts, quality, rows.drift.widest, socket.gethostname(), started, read_s)


# A run's dictionary decision is kept on a worker this long after its last task there.
KEEP_DECISION_S = 600.0


class _Dictionaries:
    """Per worker process: each run's dictionary decision, made by its first task there.

    Connections are not kept between tasks: an idle one would count against the
    server's connections outside the semaphore, on every worker.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[float, DictionaryChoice]] = {}

    def of(self, run_id: str) -> DictionaryChoice:
        now = time.monotonic()
        with self._lock:
            self._runs = {r: kept for r, kept in self._runs.items() if kept[0] > now - KEEP_DECISION_S}
            choice = self._runs[run_id][1] if run_id in self._runs else DictionaryChoice()
            self._runs[run_id] = (now, choice)
            return choice


_dictionaries = _Dictionaries()


def executing(prefix: str, dask_worker: Any) -> list[str]:
    """On a worker: the tasks of a run (keys starting with ``prefix``) still running there."""
    states = ("executing", "long-running", "cancelled", "resumed")
    return [str(k) for k, t in dask_worker.state.tasks.items() if str(k).startswith(prefix) and t.state in states]


def _cancelled() -> bool:
    """Whether the coordinator gave this task up (it failed, was stopped, or died): commit nothing.

    Dask cannot stop a running task; it marks it cancelled on its worker.
    """
    from distributed import get_worker

    worker = get_worker()
    state = worker.state.tasks.get(worker.get_current_task())
    return state is None or state.state == "cancelled"


def _write_chunk(
    job: ChunkJob, task: Task, rows: OutputRows, quality: QualityTracker | None, destination: Destination
) -> tuple[int, list[Any]]:
    from rivet.execution.pool import copy_chunk

    plan = job.plan
    writer = open_part_writer(
        plan.format,
        job.schema,
        lambda n: destination.staging_path(f"{job.run_id}-c{task.index}", n),
        job.part_bytes,
        # Row groups sized as on threads: smaller ones are encoded while the chunk is still read.
        share=plan.parallel,
        dictionary=_dictionaries.of(job.run_id),
        partitioning=plan.partitioning,
    )
    decimal, text = plan.server.split_overrides(plan.overrides)
    session = plan.server.session()
    try:
        reader = session.scan(task.query, plan.query, job.options, decimal, text)
        try:
            count = copy_chunk(reader, writer, rows, quality, f"export {plan.name} {task.name}")
        finally:
            reader.close()
        return count, writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        del session  # its connection closes here, not when the next task needs one
