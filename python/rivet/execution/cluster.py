"""Chunks of one export read by the workers of a Dask cluster, committed by this process.

The coordinator (this process) plans the chunks, keeps the state and the snapshot,
and submits one task per chunk. A task opens its own source connection (under the
exported snapshot on PostgreSQL), reads its chunk with the native reader, writes its
part straight to the destination under a name no other attempt uses, and returns
the part's rows, bytes and SHA-256. Only the coordinator marks chunks done and
publishes the manifest, so a part written by an attempt that died or lost the race
is never listed; it is removed before the run commits.

Connections to one source are bounded cluster-wide by a Dask semaphore named after
the source and the export's ``parallel``, so many workers never open more than that
many connections to one server.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from rivet.core.events import Observer
from rivet.core.redact import redact_url
from rivet.core.retry import Retrier, RetryPolicy
from rivet.errors import ChunkError, ClusterError, ConfigError
from rivet.execution.chunkqueue import ChunkQueue, ChunkRead, Task
from rivet.execution.cluster_tasks import ChunkJob, ChunkOutcome, executing, read_chunk, rivet_version
from rivet.execution.rows import OutputRows
from rivet.storage.destinations import Destination
from rivet.storage.destinations import is_secret_option as _secret_option

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.execution.counter import ChunkCounter
    from rivet.plan.export import ExportPlan
    from rivet.sources.network import NetworkSource

log = logging.getLogger("rivet")


ENGINE = "native@dask"


# How often the coordinator looks for ended tasks, and, while none ends, for a worker in the cluster.
POLL_S = 0.05


WORKER_CHECK_S = 1.0


# How long a failed run waits for its tasks still running on workers before it cleans up.
TASKS_END_WAIT_S = 60.0


NO_WORKERS_VARIABLE = "RIVET_DASK_NO_WORKERS_S"


def no_workers_timeout_s() -> float:
    """How long a run waits for a cluster without workers to get one (``RIVET_DASK_NO_WORKERS_S``, 120 s)."""
    try:
        return max(1.0, float(os.environ.get(NO_WORKERS_VARIABLE, "120")))
    except ValueError:
        return 120.0


class Cluster:
    """The Dask client the chunked exports of a run submit their chunks through."""

    def __init__(self, client: Any, *, owned: bool = False) -> None:
        self.client = client
        self.owned = owned  # made from an address: closed with the run
        self.address = str(client.scheduler.address)  # kept: a lost client forgets it

    @classmethod
    def connect(cls, address: str) -> Cluster:
        """A client of the scheduler at ``address`` (``tcp://host:8786``).

        It waits for the scheduler as long as Dask's ``distributed.comm.timeouts.connect``.
        """
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError('running on a Dask cluster needs distributed: pip install "rivet[dask]"') from None
        # The run reports a lost scheduler itself; the client would also log its reconnect tracebacks.
        logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
        try:
            return cls(Client(address, set_as_default=False), owned=True)
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {e}") from None

    def worker_versions(self) -> dict[str, str | None]:
        """The rivet version on each worker (None where rivet cannot be imported)."""
        found = self.client.run(rivet_version, on_error="return")
        return {worker: version if isinstance(version, str) else None for worker, version in found.items()}

    def close(self) -> None:
        """Close the client if the run made it."""
        if self.owned:
            self.client.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # A plan travels to the workers without its cluster.
        raise TypeError("a Cluster does not travel to the workers")


def portable_plan(plan: ExportPlan) -> ExportPlan:
    """``plan`` as the workers get it: no cluster, no check thread, no catalog, and no secret.

    Each secret is replaced by where to read it (an environment variable, a file), so a
    pickled task holds no password, storage key or catalog token; ConfigError for one
    written in the config.
    """
    return replace(
        plan,
        iceberg=None,  # the table is committed by the coordinator
        source=plan.source.without_secrets(),  # type: ignore[union-attr]
        destination=plan.destination.without_secrets(),
    )


def check_transport(plan: ExportPlan, cluster: Cluster) -> None:
    """Refuse a plain ``tcp://`` scheduler for an export with credentials, unless the config allows it.

    Tasks carry no secret, but whoever reaches a plaintext scheduler can run code on the
    workers, which hold the credentials in their environment.
    """
    portable_plan(plan)  # a secret written in the config fails here, before the source is read
    if not cluster.address.startswith("tcp://") or plan.cluster_plaintext:
        return
    source = cast("NetworkSource", plan.source)
    held = []
    if source.password or (source.url and redact_url(source.url) != source.url):
        held.append("the source's password")
    if plan.destination.secret_refs or any(_secret_option(k, v) for k, v in plan.destination.storage_options.items()):
        held.append("the destination's credentials")
    if held:
        raise ConfigError(
            f"export '{plan.name}': the Dask scheduler {cluster.address} is reached over plain tcp://, and "
            f"the workers hold {' and '.join(held)}: anyone who reaches the scheduler can run code on them. Use "
            "a tls:// scheduler (distributed's TLS settings), or set executor.allow_plaintext: true on a "
            "network you trust"
        )


def source_semaphore_name(plan: ExportPlan) -> str:
    """One name per source server and limit: exports of one source with the same ``parallel`` share it."""
    digest = hashlib.sha256(plan.source.redacted().encode()).hexdigest()[:16]
    return f"rivet-source-{digest}-{plan.parallel}"


class _WorkerWatch:
    """Fails a wait on the cluster once it has had no worker for ``RIVET_DASK_NO_WORKERS_S``."""

    def __init__(self, pool: ClusterChunkPool) -> None:
        self.pool = pool
        self.checked = time.monotonic()
        self.alone_since: float | None = None

    def check(self) -> None:
        """Called while waiting: looks at the workers once a second."""
        now = time.monotonic()
        if now - self.checked < WORKER_CHECK_S:
            return
        self.checked = now
        if self.pool.workers() > 0:
            self.alone_since = None
            return
        self.alone_since = self.alone_since or now
        if now - self.alone_since > no_workers_timeout_s():
            raise ClusterError(
                f"export {self.pool.plan.name}: the Dask cluster at {self.pool.cluster.address} has had no worker "
                f"for {no_workers_timeout_s():.0f} s; the chunks done so far stay done: continue with "
                f"`{self.pool.plan.command('run --resume')}`"
            )


class ClusterChunkPool:
    """The coordinator's side: submit a task per chunk, record each part as its task reports it.

    A failed task is retried by the run's retry policy (the backoff is spent on the
    worker); a worker that dies is Dask's to reschedule. The first failure that is
    final stops the run: waiting tasks are cancelled and running ones publish nothing.
    """

    def __init__(
        self,
        cluster: Cluster,
        plan: ExportPlan,
        queue: ChunkQueue,
        destination: Destination,
        schema: pa.Schema,
        stem: str,
        options: dict[str, Any],
        progress: ChunkCounter,
        events: Observer,
        rows: OutputRows,
        part_bytes: int,
    ) -> None:
        self.cluster = cluster
        self.plan = plan
        self.queue = queue
        self.destination = destination
        self.schema = schema
        self.stem = stem
        self.options = options
        self.progress = progress
        self.events = events
        self.rows = rows
        self.part_bytes = part_bytes
        self.fallbacks = 0
        # Unique per run attempt: a resumed run reuses its run id, and the scheduler may still hold a
        # failed task of the attempt before under the same key (and answer with its error).
        self.key_prefix = f"rivet-{queue.run_id}-{secrets.token_hex(4)}-"
        self.retrier = Retrier(
            plan.name,
            RetryPolicy(plan.tuning.max_retries, plan.tuning.retry_backoff_ms / 1000),
            plan.max_attempts,
            events,
        )

    def _job(self) -> ChunkJob:
        plan = self.plan
        return ChunkJob(
            plan=portable_plan(plan),
            schema=self.schema,
            destination=self.destination.spec.without_secrets(),
            stem=self.stem,
            run_id=self.queue.run_id,
            options=self.options,
            stamp=self.rows.stamp,
            quality=self.rows.quality.part() if self.rows.quality is not None else None,
            keep_widths=self.rows.drift.state is not None,
            part_bytes=self.part_bytes,
            semaphore=source_semaphore_name(plan),
        )

    def run(self) -> None:
        """Submit every chunk and record the parts as they come; raise the first final failure."""
        from distributed import as_completed

        client = self.cluster.client
        job = self._job()
        attempts: dict[Any, tuple[Task, int]] = {}
        running = as_completed([], loop=client.loop)

        def submit(task: Task, attempt: int, delay_s: float) -> None:
            future = client.submit(
                read_chunk, job, task, delay_s, key=f"{self.key_prefix}c{task.index}-a{attempt}", pure=False
            )
            attempts[future] = (task, attempt)
            running.add(future)

        for task in self.queue.claim_all():
            submit(task, 1, 0.0)
        try:
            while attempts:
                for future in self._next_done(running):
                    task, attempt = attempts.pop(future)
                    try:
                        outcome = self._result(future)
                    except ClusterError:
                        raise
                    except Exception as e:  # noqa: BLE001 - classified by the retry policy, as the threads do
                        submit(task, attempt + 1, self._retry_after(task, attempt, e))
                        continue
                    self._record(task, outcome)
        except BaseException:
            with contextlib.suppress(Exception):  # a lost scheduler cancels nothing
                client.cancel(list(attempts))
            self.queue.release(t for t, _ in attempts.values())
            with contextlib.suppress(Exception):  # best effort: the next run removes what is left
                self._wait_for_tasks_to_end()
                self._remove_orphans()
            raise
        self._remove_orphans()

    def _next_done(self, running: Any) -> list[Any]:
        """The futures that are done, once one is; fails when the cluster has had no worker for too long."""
        watch = _WorkerWatch(self)
        while not (done := running.next_batch(block=False)):
            time.sleep(POLL_S)  # as Dask's own as_completed waits, in small steps
            watch.check()
        return list(done)

    def _result(self, future: Any) -> ChunkOutcome:
        """A done task's outcome.

        A result kept by a worker that died since is computed again, which needs a worker:
        the wait is watched as the one for the next task is.
        """
        watch = _WorkerWatch(self)
        while True:
            try:
                return cast("ChunkOutcome", future.result(timeout=WORKER_CHECK_S))
            except TimeoutError:
                if future.done():
                    raise  # the task's own error
                watch.check()

    def workers(self) -> int:
        """Workers the scheduler knows now (0 when it cannot be asked)."""
        try:
            return len(self.cluster.client.scheduler_info()["workers"])
        except Exception:  # noqa: BLE001 - a scheduler out of reach has no worker to offer either
            return 0

    def _retry_after(self, task: Task, attempt: int, error: Exception) -> float:
        """The backoff before ``task`` is read again; raises when the run must stop instead."""
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError

        if isinstance(error, FutureCancelledError):
            self.queue.release([task])
            lost = self.cluster.client.status != "running"
            what = f"lost the Dask scheduler at {self.cluster.address}" if lost else "its task was cancelled"
            raise ClusterError(
                f"export {self.plan.name}: {what}; the chunks done so far stay done: continue with "
                f"`{self.plan.command('run --resume')}`"
            ) from error
        if isinstance(error, KilledWorker):
            error = ClusterError(f"its task killed workers more often than Dask allows ({error})")
            wait = None
        else:
            _, wait = self.retrier.next_attempt(error, attempt, chunk=task.index, label=task.label)
        if wait is None:
            self.queue.fail(task, error)
            raise ChunkError(
                f"{task.name} failed after {attempt} attempt(s): {error}\n  SQL: {task.query}", cause=error
            )
        return wait

    def _record(self, task: Task, outcome: ChunkOutcome) -> None:
        for part in outcome.parts:
            if self.destination.size_of(part.name) != part.bytes:
                raise ClusterError(
                    f"export {self.plan.name}: {task.name}: the part {part.name} that worker {outcome.worker} wrote "
                    f"is not at {self.destination.spec.shown} as this machine sees it; the coordinator and every "
                    "worker must share the destination (object storage, or one filesystem mounted on all of them)"
                )
        read = ChunkRead(task, outcome.rows, outcome.started, outcome.read_s)
        self.queue.finish([read], outcome.parts)
        if self.rows.quality is not None and outcome.quality is not None:
            self.rows.quality.merge(outcome.quality)
        self.rows.drift.note_widths(outcome.widths)
        self.progress.advance(outcome.rows)
        self.progress.published(sum(p.bytes for p in outcome.parts))
        if outcome.started:
            self.events.emit("chunk", self.plan.name, **read.event())
        counter = self.progress
        self.events.emit("progress", self.plan.name, chunks_done=counter.chunks, rows=counter.rows, bytes=counter.bytes)

    def _wait_for_tasks_to_end(self) -> None:
        """After a failure: wait (a while) for tasks Dask cannot stop, so none commits after the cleanup."""
        prefix = self.key_prefix
        deadline = time.monotonic() + TASKS_END_WAIT_S
        while time.monotonic() < deadline:
            running = self.cluster.client.run(executing, prefix)
            if not any(running.values()):
                return
            time.sleep(POLL_S)

    def _remove_orphans(self) -> None:
        """Remove what this run's attempts that died or lost left: parts no chunk lists, staged files."""
        listed = {p.name for p in self.queue.all_parts()}
        own = re.compile(rf"(^|/){re.escape(self.stem)}_chunk\d{{5}}_[0-9a-f]{{8}}(_part\d+)?\.")
        staged = f".rivet-{self.queue.run_id}-c"
        orphans = [
            n
            for n in self.destination.list_names(recursive=True)
            if (own.search(n) and n not in listed) or (n.startswith(staged) and n.endswith(".tmp"))
        ]
        if orphans:
            log.info("export %s: removing %d part(s) of attempts that did not count", self.plan.name, len(orphans))
            self.destination.remove(orphans)
