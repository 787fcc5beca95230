"""Committing a run: its parts, its own manifest, the state, the manifest, then ``_SUCCESS``.

The order, and what a failure or a kill at each step leaves:

1. parts become visible under their final names (a failure removes them);
2. the run's own manifest ``_rivet/runs/<run_id>.json`` is written, and with
   ``--validate`` the new parts are read back against it;
3. one state transaction marks the run published and moves its cursor: from here
   the run counts. A failure before this point removes the run's parts and its own
   manifest; a kill leaves them for the next run to remove;
4. the cumulative manifest (every live part) is written: it never lists a part of a
   run that did not commit. A kill between 3 and 4 is repaired by the next run from
   the committed runs' own manifests. With ``format: delta`` or ``iceberg`` the table's log
   is then made to list the same parts, in one commit (repaired the same way);
5. superseded parts and the leftovers of runs that never committed are removed;
6. ``_SUCCESS`` is written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rivet.core import failpoints
from rivet.core.runinfo import iso, utc_now
from rivet.errors import DestinationError, SchemaDriftError
from rivet.output.manifest import (
    RUNS_DIR,
    CommittedPart,
    Manifest,
    build_manifest,
    parse_manifest,
    part_stem_of,
    schema_json,
    success_marker,
)
from rivet.output.partition import check_folders
from rivet.storage import staging
from rivet.storage.destinations import Destination

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.execution.results import ExportResult
    from rivet.output import StagedPart
    from rivet.output.tables import TableCheck
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore
    from rivet.state.lease import ExportLease

log = logging.getLogger("rivet")


def part_names(stem: str, extension: str, folders: list[str]) -> list[str]:
    """The names of the parts staged for ``folders``, one per part.

    ``stem.ext`` for a part alone in its folder, ``stem_part0.ext`` ... when rotated; in a
    partition's folder, ``folder/stem.ext``.
    """
    per_folder = Counter(folders)
    seen: Counter[str] = Counter()
    names = []
    for folder in folders:
        prefix = f"{folder}/" if folder else ""
        if per_folder[folder] == 1:
            names.append(f"{prefix}{stem}.{extension}")
        else:
            names.append(f"{prefix}{stem}_part{seen[folder]}.{extension}")
            seen[folder] += 1
    return names


def commit_parts(
    destination: Destination,
    staged: list[StagedPart],
    stem: str,
    extension: str,
    run_id: str,
    *,
    chunks: tuple[int, ...] = (),
) -> list[CommittedPart]:
    """Make staged parts visible under their final names; on failure remove what was made visible."""
    committed: list[CommittedPart] = []
    try:
        for part, name in zip(staged, part_names(stem, extension, [p.folder for p in staged]), strict=True):
            if committed:
                failpoints.hit("between_parts")
            url = destination.commit(part.path, name)
            committed.append(CommittedPart(name, url, part.rows, part.bytes, part.sha256, run_id, chunks))
    except BaseException:
        destination.remove([p.name for p in committed])
        raise
    finally:
        for part in staged:
            staging.remove(part.path)
    return committed


def commit_state(
    state: StateStore, lease: ExportLease | None, run_id: str, on_commit: Callable[[], None] | None = None
) -> None:
    """The state commit that makes run ``run_id`` count, with ``on_commit``'s writes (a cursor, a position)."""
    with state.transaction():
        if lease is not None:
            lease.fence()  # in the same transaction: a run that lost its lease publishes nothing
        state.mark_published(run_id, iso(utc_now()))
        if on_commit is not None:
            on_commit()


@dataclass
class Publication:
    """One run's commit into its destination.

    ``append``: the destination accumulates the parts of every run (incremental and
    time_window with a state store); otherwise each run's parts replace the last's.
    """

    plan: ExportPlan
    destination: Destination
    state: StateStore | None
    result: ExportResult
    started: dt.datetime
    append: bool
    lease: ExportLease | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The run's table format checks, awaited before the table is committed.
    table_check: TableCheck | None = None
    _previous: Manifest | None = None
    # The parts a table format's log listed before this run's commit.
    _table_before: set[str] = field(default_factory=set)

    def publish(
        self,
        schema: pa.Schema,
        new_parts: list[CommittedPart],
        *,
        on_commit: Callable[[], None] | None = None,
        remove_on_failure: bool = True,
    ) -> None:
        """Steps 2 to 6 for parts already visible; ``on_commit`` runs inside the state commit."""
        self._previous = self._read_previous()
        live = self._live_parts(schema, new_parts)
        if self.plan.partitioning is not None:
            try:
                # Across workers and earlier runs too: no two live folders storage would merge.
                check_folders([p.name.rsplit("/", 1)[0] for p in live if "/" in p.name], self.plan.name)
            except BaseException:
                if remove_on_failure:
                    self.destination.remove([p.name for p in new_parts])
                raise
        own = f"{RUNS_DIR}/{self.result.run_id}.json"
        try:
            if self.table_check is not None:
                self.table_check.wait(schema)
            failpoints.hit("before_manifest")
            if self.lease is not None:
                self.lease.check()
            self.destination.write_file(own, self._document(schema, new_parts))
            if self.plan.validate:
                from rivet.output.validate import check_parts

                check_parts(self.destination, new_parts)
            failpoints.hit("before_cursor")
            self._commit_state(on_commit)
        except BaseException:
            self.destination.remove([own])
            if remove_on_failure:
                self.destination.remove([p.name for p in new_parts])
            raise
        self.result.parts = new_parts
        try:
            manifest = self._document(schema, live)
            self.result.manifest = self.destination.write_file(self.destination.spec.manifest_name, manifest)
            if self.plan.table_format is not None:
                failpoints.hit("before_table_commit")
                self._commit_table(schema, live)
            self._tidy(live)
            failpoints.hit("before_success")
            self.destination.write_file(self.destination.spec.success_name, success_marker(manifest))
        except Exception as e:
            # Whatever failed here, the run counts: say so, never "nothing published".
            raise DestinationError(
                f"run {self.result.run_id} is committed (its parts and cursor count), but completing "
                f"{self.destination.spec.shown} failed: {e}; the next run completes it"
            ) from e

    def _commit_table(self, schema: pa.Schema, live: list[CommittedPart]) -> None:
        """Make the table format's log list the manifest's parts (step 4)."""
        from rivet.output.tables import TableVersion
        from rivet.output.tables.base import LiveParts, run_summary

        plan, spec, fmt = self.plan, self.destination.spec, self.plan.lake_table
        assert fmt is not None
        summary = run_summary(self.result.run_id, plan.name, plan.fingerprint(), live)
        committed = fmt.commit(self.destination, LiveParts(schema, live, summary, self.append, plan.partitioning))
        self.result.table = TableVersion(fmt.name, fmt.location(spec), committed.version, spec, plan.iceberg)
        self._table_before = committed.before

    def _read_previous(self) -> Manifest | None:
        name = self.destination.spec.manifest_name
        raw = self.destination.read_file(name)
        if raw is None:
            return None
        return parse_manifest(raw, self.destination.url_of, self.destination.url_of(name))

    def _live_parts(self, schema: pa.Schema, new_parts: list[CommittedPart]) -> list[CommittedPart]:
        """Every part the manifest will list: the new ones, and for appends every committed one before."""
        if not self.append:
            return list(new_parts)
        previous = self._previous
        kept = [p for p in previous.parts if self._published(p.run_id)] if previous else []
        kept += self._unlisted_committed_parts(previous)
        if kept and previous is not None and not self._may_append(previous.schema, schema_json(schema)):
            raise SchemaDriftError(
                f"export '{self.plan.name}': the output schema differs from the parts already at "
                f"{self.destination.spec.shown}; appending would mix two schemas in one folder "
                "(write to a new destination, or move the old parts away)"
            )
        return kept + list(new_parts)

    def _may_append(self, before: list[dict[str, Any]], now: list[dict[str, Any]]) -> bool:
        """Whether parts of schema ``now`` may join parts of ``before``: the same, or evolve added columns."""
        if before == now:
            return True
        kept = {c["name"]: c for c in now}
        return self.plan.on_schema_drift == "evolve" and all(kept.get(c["name"]) == c for c in before)

    def _unlisted_committed_parts(self, previous: Manifest | None) -> list[CommittedPart]:
        """Parts of runs that committed after the manifest was last written (a kill in between)."""
        if self.state is None:
            return []
        since = previous.run_id if previous is not None else None
        parts = []
        for run_id in self.state.published_since(self.plan.key, self.destination.spec.url, since):
            raw = self.destination.read_file(f"{RUNS_DIR}/{run_id}.json")
            if raw is None:
                continue
            found = parse_manifest(raw, self.destination.url_of, f"{RUNS_DIR}/{run_id}.json").parts
            log.info("export %s: listing the %d part(s) of committed run %s again", self.plan.name, len(found), run_id)
            parts += found
        return parts

    def _published(self, run_id: str | None) -> bool:
        """Whether a run's parts count: it reached the state commit (unknown runs count)."""
        if run_id is None or self.state is None:
            return True
        return self.state.run_published(run_id) is not False

    def _document(self, schema: pa.Schema, parts: list[CommittedPart]) -> bytes:
        plan = self.plan
        layout = {}
        if plan.partitioning is not None:
            layout = {
                "partition_by": list(plan.partitioning.columns),
                "partition_granularity": plan.partitioning.granularity or "day",
            }
        return build_manifest(
            run_id=self.result.run_id,
            export=plan.name,
            mode=plan.mode,
            started_at=iso(self.started),
            finished_at=iso(utc_now()),
            source=plan.source.redacted(),
            fmt=plan.format.kind,
            compression=plan.format.compression,
            schema=schema,
            parts=parts,
            extra={**layout, **self.extra},
        )

    def _commit_state(self, on_commit: Callable[[], None] | None) -> None:
        if self.state is None:
            if on_commit is not None:
                on_commit()
            return
        commit_state(self.state, self.lease, self.result.run_id, on_commit)

    def _tidy(self, live: list[CommittedPart]) -> None:
        """Remove superseded parts, and the visible parts of runs that never committed."""
        live_names = {p.name for p in live}
        names = self.destination.list_names(recursive=self.plan.partitioning is not None)
        state = self.state
        if state is not None and self.lease is not None and self.lease.spared_run is not None:
            # The run whose lease this one took over by time alone may be alive: its parts stay.
            spared = state.part_stem_of_run(self.lease.spared_run)
            names = [n for n in names if spared is None or part_stem_of(self.plan.name, n) != spared]
        if self.append or self.plan.keep_superseded:
            doomed = state.stray_parts(self.plan.key, names, live_names) if state else []
            # This run's own leftovers: a part an interrupted attempt of a resumed run left unpublished.
            own = {part_stem_of(self.plan.name, p.name) for p in self.result.parts or []} - {None}
            doomed += [
                n for n in names if n not in live_names and n not in doomed and part_stem_of(self.plan.name, n) in own
            ]
        else:
            resumable = state.resumable_stems(self.plan.key) if state else set()
            # A table format's previous version stays readable until the next run: the parts it listed.
            kept = self._table_before
            doomed = [
                n
                for n in names
                if (stem := part_stem_of(self.plan.name, n))
                and n not in live_names
                and stem not in resumable
                and n not in kept
            ]
        for name in doomed:
            log.info("export %s: removing %s (superseded or never committed)", self.plan.name, name)
        self.destination.remove(doomed)
