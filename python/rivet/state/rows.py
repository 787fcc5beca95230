"""The state store's records that program logic reads, typed: each field is the table column of its name.

Typed here: a chunked run (``chunk_runs``), its chunks (``chunk_tasks``) and a claimed chunk,
an incremental cursor (``cursors``), a boundary (``boundaries``) and a lease (``leases``).
The listing rows (runs, files, aggregates, journals, the last success, the original rivet's
rows) stay mappings: the CLI renders them as they are, to JSON or to tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ChunkRun:
    """A chunked run of an export: what made it, how its parts are named, where it writes, how far it got."""

    run_id: str
    namespace: str
    export_name: str
    fingerprint: str
    part_stem: str
    status: str
    started_at: str
    updated_at: str
    destination: str | None


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """One chunk of a chunked run: its SQL and bounds, its state, and the rows and parts it was published in."""

    run_id: str
    chunk_index: int
    query: str
    label: str
    status: str
    attempts: int
    rows: int | None
    parts: list[dict[str, Any]]
    last_error: str | None
    updated_at: str
    bounds: Any


@dataclass(frozen=True, slots=True)
class ClaimedChunk:
    """A chunk a worker has just taken: its index, stored SQL and label."""

    chunk_index: int
    query: str
    label: str


@dataclass(frozen=True, slots=True)
class Cursor:
    """The incremental cursor of an export: the last value exported, and the run that moved it there."""

    namespace: str
    export_name: str
    value: str
    sql_literal: str
    run_id: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Boundary:
    """The last boundary of an appending export in a scope; ``strict``: the next run reads only past it."""

    namespace: str
    export_name: str
    scope: str
    value: str
    sql_literal: str
    strict: bool
    run_id: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds an export's lease: the run, its ``host:pid:space``, since when, and its last heartbeat."""

    namespace: str
    export_name: str
    run_id: str
    holder: str
    acquired_at: str
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class ChangePosition:
    """Where a change-capture export reads next (``change_positions``).

    ``phase`` is ``anchoring`` from the moment a run starts to make its slot (or take its
    log position) until the snapshot over it is published, then ``streaming``; ``anchor``
    names the slot or replica id the position belongs to; ``position`` is None while anchoring.
    """

    phase: str
    anchor: str
    position: str | None
    run_id: str
    updated_at: str
