"""Repairing a published chunked run: the chunks a reconcile flagged are read again.

Chunks share parts, so every chunk of a part that holds a flagged chunk is read again
into new parts, and the manifest lists the new parts in place of the old ones, which
are then removed. Nothing is added beside the old rows: readers of the manifest (or
of the folder) never see a row twice.

The repair goes through the run commit (``Publication``). Its state transaction,
which records the chunks' new rows and parts, is the point from which the repair
counts: a kill before it leaves new parts that no manifest lists (the next run removes
them); a kill after it leaves the manifest behind the state, and the next
``rivet repair`` republishes it from the state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rivet.core.events import Observer
from rivet.core.runinfo import from_iso, iso, part_stem, utc_now
from rivet.errors import ConfigError, SchemaDriftError
from rivet.execution.checkpoints import rebuilt_queries, run_location
from rivet.execution.chunked import ChunkSource
from rivet.execution.chunkqueue import ChunkQueue, Task
from rivet.execution.commit import Publication
from rivet.execution.counter import ChunkCounter
from rivet.execution.results import ExportResult
from rivet.execution.rows import OutputRows
from rivet.output.manifest import CommittedPart, Manifest, parse_manifest, part_from_record, schema_json, success_marker
from rivet.output.validate import part_problem
from rivet.storage.destinations import Destination, open_destination

if TYPE_CHECKING:
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore
    from rivet.state.lease import ExportLease
    from rivet.state.rows import ChunkRun, ChunkTask

log = logging.getLogger("rivet")


@dataclass(frozen=True)
class RepairPlan:
    """What a repair of one run reads again and replaces."""

    export: str
    run_id: str
    flagged: dict[int, str]  # chunk -> why: the reconcile's verdict, or a part missing at the destination
    chunks: tuple[int, ...]  # every chunk read again: the flagged ones and their part-mates
    replaced: tuple[str, ...]  # the parts the new ones replace
    republish: bool  # the manifest or _SUCCESS lags the state (a repair killed after its commit)

    @property
    def needed(self) -> bool:
        """Whether there is anything to do."""
        return bool(self.chunks) or self.republish

    def to_dict(self) -> dict[str, Any]:
        """The plan as ``--json`` prints it."""
        return {
            "export": self.export,
            "run_id": self.run_id,
            "flagged": [{"chunk": c, "reason": why} for c, why in sorted(self.flagged.items())],
            "chunks": list(self.chunks),
            "replaced_parts": list(self.replaced),
            "republish_manifest": self.republish,
        }


def published_manifest(destination: Destination, run: ChunkRun) -> Manifest:
    """The manifest at the run's destination, which must still be the run's."""
    name = destination.spec.manifest_name
    raw = destination.read_file(name)
    if raw is None:
        raise ConfigError(f"{destination.url_of(name)} is missing: nothing of run {run.run_id} to repair")
    manifest = parse_manifest(raw, destination.url_of, destination.url_of(name))
    if manifest.run_id != run.run_id:
        raise ConfigError(
            f"{destination.spec.shown} now holds run {manifest.run_id}, not the checkpointed run {run.run_id}: "
            "only the last published chunked run can be repaired"
        )
    return manifest


def plan_repair(
    export: str,
    run_id: str,
    partitions: Iterable[dict[str, Any]],
    tasks: list[ChunkTask],
    manifest: Manifest,
    destination: Destination,
) -> RepairPlan:
    """The chunks to read again: those a reconcile report flagged, those whose part is gone, and their part-mates."""
    flagged: dict[int, str] = {}
    for p in partitions:
        if p["status"] != "match":
            flagged[int(p["chunk"])] = f"{p['status']}: source {p['source_count']}, exported {p['exported_count']}"
    problems: dict[str, str | None] = {}
    for task in tasks:
        for record in task.parts:
            if record["name"] not in problems:
                problems[record["name"]] = part_problem(destination, part_from_record(record), deep=False)
            if (problem := problems[record["name"]]) is not None:
                flagged.setdefault(task.chunk_index, problem)
    replaced = {r["name"] for t in tasks if t.chunk_index in flagged for r in t.parts}
    chunks = tuple(t.chunk_index for t in tasks if t.chunk_index in flagged or replaced & {r["name"] for r in t.parts})
    held = {r["name"] for t in tasks for r in t.parts}
    vouched = destination.read_file(destination.spec.success_name) == success_marker(manifest.raw)
    return RepairPlan(
        export,
        run_id,
        flagged,
        chunks,
        tuple(sorted(replaced)),
        republish=held != {p.name for p in manifest.parts} or not vouched,
    )


def execute_repair(
    plan: ExportPlan,
    state: StateStore,
    run: ChunkRun,
    repair: RepairPlan,
    lease: ExportLease,
    observer: Observer | None = None,
) -> ExportResult:
    """Read the plan's chunks again into new parts, commit them in the state, republish the manifest.

    With no chunks to read (``repair.republish`` only) the manifest is written again from the state.
    """
    run_id = run.run_id
    events = observer or Observer()
    result = ExportResult(name=plan.name, run_id=run_id, status="running", mode=plan.mode)
    spec, _ = run_location(plan, run)
    destination = open_destination(spec)
    destination.prepare(plan.name, exclusive=True)
    tasks = {t.chunk_index: t for t in state.chunk_tasks(run_id)}
    source = ChunkSource.open(plan)
    try:
        queries = rebuilt_queries(plan, source.planner, source.schema, run_id, list(tasks.values()))
        manifest = published_manifest(destination, run)
        now = utc_now()
        rows = OutputRows.for_run(plan, state, events, now)
        schema = rows.stamp.schema(source.schema)
        if schema_json(schema) != manifest.schema:
            raise SchemaDriftError(
                f"export '{plan.name}': the source's columns changed since run {run_id}; a repair writes parts "
                "that fit the published ones. Run the export again instead"
            )
        queue = ChunkQueue.in_memory(run_id, [Task(i, queries[i], tasks[i].label) for i in repair.chunks])
        stem = part_stem(plan.name, now)
        pool = source.pool(queue, destination, schema, stem, ChunkCounter(), events, rows, source.take_planner())
        try:
            pool.run()
        except BaseException:
            destination.remove([p.name for p in queue.all_parts()])
            raise
        new_parts = queue.all_parts()
        live = _live_parts(tasks, queue)
        previous = json.loads(manifest.raw).get("repairs", [])
        note = {"at": iso(now), "chunks": list(repair.chunks), "replaced": list(repair.replaced)}
        publication = Publication(
            plan,
            destination,
            state,
            result,
            from_iso(run.started_at),
            append=False,
            lease=lease,
            extra={"repairs": [*previous, note]},
        )

        def on_commit() -> None:
            stamp = iso(utc_now())
            for index, (parts, read) in queue.done.items():
                state.chunks_done(run_id, [(index, read.rows)], [p.record() for p in parts], stamp)

        try:
            publication.publish(schema, live, on_commit=on_commit, remove_on_failure=False)
        except BaseException:
            if not _committed(state, run_id, new_parts):
                destination.remove([p.name for p in new_parts])
            raise
        state.log_files(run_id, plan.key, [(p.url, p.rows, p.bytes, p.sha256) for p in new_parts], iso(utc_now()))
        result.parts = new_parts
        result.status = "success"
        return result
    finally:
        destination.cleanup()
        del source


def _live_parts(tasks: dict[int, ChunkTask], queue: ChunkQueue) -> list[CommittedPart]:
    """Every part of the run after the repair, once, in chunk order: new ones where chunks were read again."""
    listed: list[CommittedPart] = []
    for index in sorted(tasks):
        if index in queue.done:
            listed += queue.done[index][0]
        else:
            listed += [part_from_record(r) for r in tasks[index].parts]
    return list({p.name: p for p in listed}.values())


def _committed(state: StateStore, run_id: str, parts: list[CommittedPart]) -> bool:
    """Whether the state lists ``parts`` (the repair's commit went through)."""
    held = {r["name"] for t in state.chunk_tasks(run_id) for r in t.parts}
    return {p.name for p in parts} <= held
