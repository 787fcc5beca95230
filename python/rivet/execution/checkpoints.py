"""Resuming a checkpointed run without trusting the state store with paths or SQL.

Whoever can write the state store must not be able to make a run write, read or
delete outside the export's destination, or run SQL of their choosing: a stored
folder must be one the export's destination renders to, part names must be the
export's, and every chunk's SQL is made again from the plan and the chunk's stored
bounds (and must match the stored text, or the run is refused).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from rivet.core.redact import redact_url
from rivet.errors import ConfigError, StateError
from rivet.plan.chunks import check_cover, rebuilt_chunk, resolved_chunking
from rivet.state.keys import written_to

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.plan.export import ExportPlan
    from rivet.sources.base import Session
    from rivet.state.rows import ChunkRun, ChunkTask
    from rivet.storage.destinations import DestinationSpec


def run_location(plan: ExportPlan, run: ChunkRun) -> tuple[DestinationSpec, str]:
    """Where a resumed run writes and how its parts are named, as the state says, if the config agrees.

    The run keeps its folder even if ``{date}`` now names another; but a folder or a name
    the export could not have used is refused: the state store is not trusted with paths.
    """
    stem = str(run.part_stem or "")
    if not re.fullmatch(rf"{re.escape(plan.name)}_\d{{8}}_\d{{6}}_\d{{3}}", stem):
        raise StateError(
            f"export '{plan.name}': run {run.run_id} names its parts {stem!r} in the state store, which is not "
            f"a name this export gives; discard it with `{plan.command('state reset-chunks')}`"
        )
    stored = run.destination
    if not stored:
        return plan.destination, stem
    return stored_destination(plan, str(stored), f"run {run.run_id}"), stem


def stored_destination(plan: ExportPlan, stored: str, whose: str) -> DestinationSpec:
    """``plan``'s destination at ``stored`` (a folder the state names), if the export could have written there."""
    assert plan.identity is not None
    if not written_to(stored, plan.identity.destination):
        raise StateError(
            f"export '{plan.name}': {whose} wrote to {redact_url(stored)} says the state store, which is not this "
            f"export's destination ({plan.destination.shown}); the store is not trusted with paths. Discard its "
            f"checkpoints with `{plan.command('state reset-chunks')}`"
        )
    return dataclasses.replace(plan.destination, url=stored)


def rebuilt_queries(
    plan: ExportPlan, session: Session, schema: pa.Schema, run_id: str, tasks: list[ChunkTask]
) -> dict[int, str]:
    """Each chunk's SQL made again from the plan and its stored bounds; the stored SQL is never run."""
    spec = resolved_chunking(plan, session, schema)
    queries = {}
    for task in tasks:
        try:
            chunk = rebuilt_chunk(plan, schema, spec, int(task.chunk_index), task.bounds)
        except (ValueError, TypeError, ConfigError) as e:
            raise StateError(
                f"export '{plan.name}': run {run_id} cannot be resumed: {e} (a run checkpointed by an older rivet, "
                f"or an edited state store); discard it with `{plan.command('state reset-chunks')}`"
            ) from None
        if chunk.query != task.query:
            raise StateError(
                f"export '{plan.name}': chunk {chunk.index} of run {run_id} holds other SQL in the state store than "
                f"its bounds make; it is not run. Discard the run with `{plan.command('state reset-chunks')}`"
            )
        queries[chunk.index] = chunk.query
    try:
        # Each chunk is one this plan could make; together they must still cover every row once.
        ordered = sorted(tasks, key=lambda t: int(t.chunk_index))
        if [int(t.chunk_index) for t in ordered] != list(range(len(ordered))):
            raise ValueError("its chunks are not numbered 0 to n-1")
        check_cover([tuple(t.bounds) for t in ordered])
    except ValueError as e:
        raise StateError(
            f"export '{plan.name}': run {run_id} cannot be resumed: {e} (an edited state store); discard it with "
            f"`{plan.command('state reset-chunks')}`"
        ) from None
    return queries
