"""Committing a run: its parts, the manifests, the state, then ``_SUCCESS``.

The order, and what a failure or a kill at each step leaves:

1. parts become visible under their final names (a failure removes them);
2. ``_rivet/runs/<run_id>.json`` and the cumulative ``manifest.json`` are written
   (a failure restores the previous manifest and removes the parts);
3. with ``--validate`` the new parts are read back against the manifest;
4. one state transaction marks the run published and moves its cursor: from here
   the run counts, and the next run builds on it;
5. superseded parts and the leftovers of runs that never got this far are removed;
6. ``_SUCCESS`` is written.

A run killed before step 4 is never built upon: the next run drops its parts from
the manifest and the destination, so appends stay exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rivet import failpoints
from rivet.destinations import Destination
from rivet.errors import SchemaDriftError
from rivet.manifest import (
    RUNS_DIR,
    CommittedPart,
    Manifest,
    build_manifest,
    parse_manifest,
    schema_json,
    success_marker,
)
from rivet.runinfo import iso, utc_now

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.formats import StagedPart
    from rivet.plan import ExportPlan
    from rivet.results import ExportResult
    from rivet.state import StateStore
    from rivet.state.lease import ExportLease

log = logging.getLogger("rivet")


def part_names(stem: str, extension: str, count: int) -> list[str]:
    """``stem.ext`` for one part, ``stem_part0.ext`` ... when rotated."""
    if count == 1:
        return [f"{stem}.{extension}"]
    return [f"{stem}_part{i}.{extension}" for i in range(count)]


def commit_parts(
    destination: Destination, staged: list[StagedPart], stem: str, extension: str, run_id: str
) -> list[CommittedPart]:
    """Make staged parts visible under their final names; on failure remove what was made visible."""
    committed: list[CommittedPart] = []
    try:
        for part, name in zip(staged, part_names(stem, extension, len(staged)), strict=True):
            if committed:
                failpoints.hit("between_parts")
            url = destination.commit(part.path, name)
            committed.append(CommittedPart(name, url, part.rows, part.bytes, part.sha256, run_id))
    except BaseException:
        destination.remove([p.name for p in committed])
        raise
    finally:
        for part in staged:
            part.path.unlink(missing_ok=True)
    return committed


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
    _previous: Manifest | None = None

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
        written_manifest = False
        try:
            failpoints.hit("before_manifest")
            if self.lease is not None:
                self.lease.check()
            self.destination.write_file(f"{RUNS_DIR}/{self.result.run_id}.json", self._document(schema, new_parts))
            manifest = self._document(schema, live)
            written_manifest = True
            self.result.manifest = self.destination.write_file(self.destination.spec.manifest_name, manifest)
            if self.plan.validate:
                from rivet.validate import check_parts

                check_parts(self.destination, new_parts)
            failpoints.hit("before_cursor")
            self._commit_state(on_commit)
        except BaseException:
            self._roll_back(new_parts, written_manifest, remove_on_failure)
            raise
        self.result.parts = new_parts
        self._tidy(live)
        failpoints.hit("before_success")
        self.destination.write_file(self.destination.spec.success_name, success_marker(manifest))

    def _read_previous(self) -> Manifest | None:
        raw = self.destination.read_file(self.destination.spec.manifest_name)
        if raw is None:
            return None
        return parse_manifest(
            raw, self.destination.url_of, self.destination.url_of(self.destination.spec.manifest_name)
        )

    def _live_parts(self, schema: pa.Schema, new_parts: list[CommittedPart]) -> list[CommittedPart]:
        """Every part ``manifest.json`` will list."""
        if not self.append or self._previous is None:
            return list(new_parts)
        kept = [p for p in self._previous.parts if self._published(p.run_id)]
        if kept and self._previous.schema != schema_json(schema):
            raise SchemaDriftError(
                f"export '{self.plan.name}': the output schema differs from the parts already at "
                f"{self.destination.spec.url}; appending would mix two schemas in one folder "
                "(write to a new destination, or move the old parts away)"
            )
        return kept + list(new_parts)

    def _published(self, run_id: str | None) -> bool:
        """Whether a run's parts count: it reached the state commit (unknown runs count)."""
        if run_id is None or self.state is None:
            return True
        return self.state.run_published(run_id) is not False

    def _document(self, schema: pa.Schema, parts: list[CommittedPart]) -> bytes:
        plan = self.plan
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
            extra=self.extra,
        )

    def _commit_state(self, on_commit: Callable[[], None] | None) -> None:
        if self.state is None:
            if on_commit is not None:
                on_commit()
            return
        with self.state.transaction():
            self.state.mark_published(self.result.run_id, iso(utc_now()))
            if on_commit is not None:
                on_commit()

    def _roll_back(self, new_parts: list[CommittedPart], written_manifest: bool, remove_parts: bool) -> None:
        """Undo steps 2 and 3: the previous manifest comes back, the run's own goes."""
        try:
            if written_manifest:
                if self._previous is not None:
                    self.destination.write_file(self.destination.spec.manifest_name, self._previous.raw)
                else:
                    self.destination.remove([self.destination.spec.manifest_name])
            self.destination.remove([f"{RUNS_DIR}/{self.result.run_id}.json"])
        finally:
            if remove_parts:
                self.destination.remove([p.name for p in new_parts])

    def _tidy(self, live: list[CommittedPart]) -> None:
        """Remove superseded parts and the visible parts of runs that never committed."""
        live_names = {p.name for p in live}
        doomed: list[str] = []
        if self._previous is not None and not (self.append or self.plan.keep_superseded):
            doomed += [p.name for p in self._previous.parts if p.name not in live_names]
        if self.state is not None:
            doomed += self.state.stray_parts(self.plan.name, self.destination.list_names(), live_names)
        for name in sorted(set(doomed)):
            log.info("export %s: removing %s (superseded or never committed)", self.plan.name, name)
        self.destination.remove(sorted(set(doomed)))
