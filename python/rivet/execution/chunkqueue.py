"""The chunks of a chunked run, claimed so that each worker's part holds neighbouring keys.

A worker continues with the chunk after its last one while that is free. Otherwise
it takes the start of the longest stretch of unclaimed chunks, or, when another
worker is heading into that stretch, its middle: the workers split the key space
between them instead of taking turns, so a part covers a range of keys rather
than every other chunk.

A chunk is done only once the part holding it is published; the chunks of a part
that failed go back to the queue.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rivet.core.redact import redact_text
from rivet.core.runinfo import iso, utc_now
from rivet.errors import StateError
from rivet.output.manifest import CommittedPart, part_from_record

if TYPE_CHECKING:
    from rivet.state import StateStore
    from rivet.state.rows import ClaimedChunk


@dataclass(frozen=True)
class Task:
    """A chunk to read: its index, SQL and a label for messages."""

    index: int
    query: str
    label: str

    @property
    def name(self) -> str:
        """``chunk <index> <label>``, as messages name it."""
        return f"chunk {self.index} {self.label}"


def next_index(pending: Collection[int], running: Collection[int], after: int | None) -> int | None:
    """The chunk a worker whose last chunk was ``after`` should read next (None: nothing left)."""
    if after is not None and after + 1 in pending:
        return after + 1
    longest: list[int] = []
    for _, group in itertools.groupby(enumerate(sorted(pending)), key=lambda p: p[1] - p[0]):
        stretch = [index for _, index in group]
        if len(stretch) > len(longest):
            longest = stretch
    if not longest:
        return None
    if longest[0] - 1 in running:
        return longest[len(longest) // 2]
    return longest[0]


@dataclass(frozen=True)
class ChunkRead:
    """A chunk read into a part: how many rows it gave, when its read began and how long it took."""

    task: Task
    rows: int
    started: str
    read_s: float

    def event(self) -> dict[str, Any]:
        """The fields of its ``chunk`` event."""
        return {"chunk": self.task.index, "rows": self.rows, "started": self.started, "read_s": round(self.read_s, 6)}


@dataclass
class ChunkQueue:
    """Chunks to read: in memory, or in the state store (which makes the run resumable)."""

    run_id: str
    state: StateStore | None
    pending: dict[int, Task] = field(default_factory=dict)
    running: set[int] = field(default_factory=set)
    done: dict[int, tuple[list[CommittedPart], ChunkRead]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The SQL of each chunk as this run planned or rebuilt it; a stored queue's own SQL text is never run.
    queries: dict[int, str] = field(default_factory=dict)

    def _task(self, claimed: ClaimedChunk) -> Task:
        index = int(claimed.chunk_index)
        if index not in self.queries:
            raise StateError(f"run {self.run_id}: the state store holds a chunk {index} this run never planned")
        return Task(index, self.queries[index], str(claimed.label))

    @classmethod
    def in_memory(cls, run_id: str, tasks: Iterable[Task]) -> ChunkQueue:
        """A queue of ``tasks`` that lives as long as the run."""
        return cls(run_id, None, {t.index: t for t in tasks})

    def claim(self, after: int | None = None) -> Task | None:
        """The next chunk for a worker whose last chunk was ``after``, or None when all are taken."""
        if self.state is not None:
            return self._claim_stored(after)
        with self.lock:
            index = next_index(self.pending.keys(), self.running, after)
            if index is None:
                return None
            self.running.add(index)
            return self.pending.pop(index)

    def claim_all(self) -> list[Task]:
        """Every chunk not yet taken, in chunk order (a cluster's coordinator submits them all)."""
        if self.state is not None:
            rows = self.state.claim_pending_chunks(self.run_id, iso(utc_now()))
            return [self._task(r) for r in rows]
        with self.lock:
            tasks = [self.pending.pop(i) for i in sorted(self.pending)]
            self.running.update(t.index for t in tasks)
        return tasks

    def _claim_stored(self, after: int | None) -> Task | None:
        assert self.state is not None
        now = iso(utc_now())
        if after is not None and (row := self.state.claim_chunk_at(self.run_id, after + 1, now)) is not None:
            return self._task(row)
        while True:
            pending, running = self.state.open_chunk_indexes(self.run_id)
            index = next_index(pending, running, after)
            if index is None:
                return None
            # Another worker may have claimed it in between: choose again.
            if (row := self.state.claim_chunk_at(self.run_id, index, now)) is not None:
                return self._task(row)

    def release(self, tasks: Iterable[Task]) -> None:
        """Put back chunks that were read into a part that will never be published."""
        tasks = list(tasks)
        if self.state is not None:
            self.state.release_chunks(self.run_id, [t.index for t in tasks], iso(utc_now()))
            return
        with self.lock:
            for t in tasks:
                self.running.discard(t.index)
                self.pending[t.index] = t

    def finish(self, reads: list[ChunkRead], parts: list[CommittedPart]) -> None:
        """Record chunks whose part is published."""
        with self.lock:
            for read in reads:
                self.running.discard(read.task.index)
                self.done[read.task.index] = (parts, read)
        if self.state is not None:
            records = [p.record() for p in parts]
            self.state.chunks_done(self.run_id, [(r.task.index, r.rows) for r in reads], records, iso(utc_now()))

    def fail(self, task: Task, error: BaseException) -> None:
        """Record a chunk that ran out of attempts."""
        if self.state is not None:
            self.state.chunk_failed(self.run_id, task.index, redact_text(str(error)), iso(utc_now()))

    def all_parts(self) -> list[CommittedPart]:
        """Every published part once, in chunk order (from the state store when checkpointed)."""
        if self.state is not None:
            listed = [part_from_record(p) for t in self.state.chunk_tasks(self.run_id) for p in t.parts]
        else:
            with self.lock:
                listed = [p for i in sorted(self.done) for p in self.done[i][0]]
        return list({p.name: p for p in listed}.values())

    def chunk_rows(self) -> list[tuple[int, str, int]]:
        """Each done chunk's index, label and rows, in chunk order."""
        if self.state is not None:
            tasks = self.state.chunk_tasks(self.run_id)
            # A done chunk's rows are recorded with it (chunks_done).
            return [(t.chunk_index, t.label, t.rows or 0) for t in tasks if t.status == "done"]
        with self.lock:
            return [(i, self.done[i][1].task.label, self.done[i][1].rows) for i in sorted(self.done)]
