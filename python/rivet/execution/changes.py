"""Change capture (``mode: cdc``): a table's changes from the server's log, each published once.

A run, in order:

1. reads the export's log position from the state store. A first run (or one after a run
   killed while anchoring) records that it is anchoring, then makes the anchor (a
   PostgreSQL slot; a MySQL/MariaDB binlog position). With ``initial: snapshot`` it
   publishes the table as of exactly that position under ``<destination>/snapshot/``, and
   the position is stored in that publication's state commit. A run killed before it
   finds the export anchoring: the half-made slot is dropped and anchoring starts over;
2. checks the server still holds the log from the position: a vanished slot or a purged
   binary log is a loud error, never a silent new anchor (that would skip changes);
3. streams the changes committed from the position to the log's end as the run started,
   stages them as parts and publishes them like an appending run, the new position
   written in the same state transaction that makes the parts count;
4. only then tells the server it may free the log before the new position.

A run killed anywhere reads again from the last published position: each change is
published exactly once, and ``(__pos, __seq)`` orders them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from rivet.core import failpoints
from rivet.core.retry import Retrier, RetryPolicy
from rivet.core.runinfo import iso, part_stem, utc_now
from rivet.errors import ConfigError, QueryError, SchemaDriftError
from rivet.execution.commit import Publication, commit_parts
from rivet.execution.merge import merge_changes, merge_keys, merge_snapshot, resume_from_table, transaction_chunks
from rivet.execution.rows import OutputRows
from rivet.execution.single import stage
from rivet.output.manifest import RUNS_DIR, success_marker
from rivet.state.changes import ANCHORING, STREAMING
from rivet.storage import staging
from rivet.storage.destinations import Destination, open_destination

if TYPE_CHECKING:
    import datetime as dt

    from rivet._native import BatchReader
    from rivet.core.events import Observer
    from rivet.execution.results import ExportResult
    from rivet.output import StagedPart
    from rivet.output.manifest import CommittedPart
    from rivet.output.tables import TableCheck
    from rivet.plan.export import ExportPlan
    from rivet.sources.changes import ChangeFeed
    from rivet.state import StateStore
    from rivet.state.lease import ExportLease
    from rivet.state.rows import ChangePosition

log = logging.getLogger("rivet")

T = TypeVar("T")

# Where the initial snapshot goes, inside the destination.
SNAPSHOT_FOLDER = "snapshot"
# Changes a write: merge run folds and merges per commit unless cdc.commit_every_rows says.
COMMIT_EVERY_ROWS = 500_000
# The codes of the native readers' errors for logged changes whose columns differ from the table's
# now: columns added or dropped (followed unless on_schema_drift: fail), a column's type changed.
LOG_SCHEMA_DRIFT = "rivet-schema-drift"
LOG_COLUMN_RETYPED = "rivet-column-retyped"


@dataclasses.dataclass
class ChangeRun:
    """One run of a change-capture export: its plan, state, feed and outcome."""

    plan: ExportPlan
    state: StateStore
    feed: ChangeFeed
    result: ExportResult
    started: dt.datetime
    events: Observer
    lease: ExportLease | None
    table_check: TableCheck | None

    def set_position(self, phase: str, position: str | None) -> None:
        """Store where the next run reads (inside a publication's state commit, or alone while anchoring)."""
        self.state.set_change_position(
            self.plan.key, phase, self.feed.anchor_name, position, self.result.run_id, iso(utc_now())
        )

    def prepare(self, destination: Destination) -> None:
        """Ready ``destination`` for this run's parts (stale staging removed, other writers fenced)."""
        lease = self.lease
        destination.prepare(self.plan.name, exclusive=lease is not None, spared_run=lease.spared_run if lease else None)


def run_changes(
    plan: ExportPlan,
    state: StateStore | None,
    result: ExportResult,
    started: dt.datetime,
    events: Observer,
    lease: ExportLease | None = None,
    table_check: TableCheck | None = None,
) -> None:
    """Anchor (and snapshot) on the first run, then publish the changes since the stored position."""
    if state is None:
        raise ConfigError(f"export '{plan.name}': mode: cdc keeps its log position in a state store (give state_dir)")
    feed = plan.change_feed()
    run = ChangeRun(plan, state, feed, result, started, events, lease, table_check)
    try:
        feed.check_overrides(plan.overrides)  # before a snapshot is published with types its changes lack
    except BaseException:
        feed.close()
        raise
    if plan.tables:
        from rivet.execution.change_tables import run_table_changes

        run_table_changes(run)
        return
    try:
        keys = merge_keys(run) if plan.merge_keys is not None else None
        snapshot_parts, position = _position(run)
        say_lag(run, position)
        if keys is not None:
            end = _merge_in_commits(run, keys, position)
        else:
            end = _publish_changes(run, position, snapshot_parts)
            result.parts = snapshot_parts + result.parts
        failpoints.hit("before_confirm")
        feed.confirm(end)
    finally:
        feed.close()


def _position(run: ChangeRun) -> tuple[list[CommittedPart], str]:
    """The position this run reads from, anchoring first when the export has none; and the snapshot's parts."""
    plan, feed = run.plan, run.feed
    stored = stored_position(run)
    if stored is not None and stored.phase == STREAMING:
        assert stored.position is not None
        feed.check(stored.position)
        if plan.merge_keys is not None:
            return [], resume_from_table(run, stored.position)
        complete_snapshot(run, stored.run_id)
        return [], stored.position
    start_anchoring(run, stored)
    assert plan.changes is not None
    if plan.changes.initial == "snapshot":
        return ([], merge_snapshot(run)) if plan.merge_keys is not None else _publish_snapshot(run)
    position = feed.anchor()
    run.set_position(STREAMING, position)
    log.info("export %s: anchored at %s (%s); changes from here on are captured", plan.name, position, feed.anchor_name)
    return [], position


def stored_position(run: ChangeRun) -> ChangePosition | None:
    """The export's stored position; refused when it was taken through another anchor than the config's."""
    plan, feed = run.plan, run.feed
    stored = run.state.change_position(plan.key)
    if stored is not None and stored.anchor != feed.anchor_name:
        raise ConfigError(
            f"export '{plan.name}': its log position was taken through {stored.anchor}, and its config now names "
            f"{feed.anchor_name}; set cdc back, or start over from a new anchor with `{plan.command('state reset')}`"
        )
    return stored


def start_anchoring(run: ChangeRun, stored: ChangePosition | None) -> None:
    """Record that the export is anchoring, first dropping an anchor a run killed while anchoring half made."""
    plan, feed = run.plan, run.feed
    if stored is None:
        _refuse_original_checkpoint(plan)
    elif feed.release():
        log.info("export %s: dropped %s, half made by an interrupted run; anchoring again", plan.name, feed.anchor_name)
    run.set_position(ANCHORING, None)
    failpoints.hit("after_anchor_recorded")


def say_lag(run: ChangeRun, position: str) -> None:
    """How far behind the log's end the run starts: an event, and a warning past ``cdc.max_lag_bytes``."""
    plan = run.plan
    behind = run.feed.bytes_behind(position)
    run.events.emit("cdc_lag", plan.name, position=position, bytes_behind=behind)
    limit = plan.changes.max_lag_bytes if plan.changes else None
    if behind is not None and limit is not None and behind > limit:
        log.warning(
            "export %s: starts %d bytes of log behind (cdc.max_lag_bytes %d): the server keeps that log for it; "
            "run it more often",
            plan.name,
            behind,
            limit,
        )


def _refuse_original_checkpoint(plan: ExportPlan) -> None:
    """An original tool's position file means changes it has not read yet: anchoring anew would skip them."""
    from pathlib import Path

    checkpoint = plan.changes.checkpoint if plan.changes else None
    if checkpoint and Path(checkpoint).exists():
        raise ConfigError(
            f"export '{plan.name}': cdc.checkpoint {checkpoint} holds a position of the original rivet, which this "
            "rivet does not read (it keeps positions in its state store); anchoring anew would skip the changes "
            "since. Remove cdc.checkpoint and set cdc.initial: snapshot to start from a fresh snapshot"
        )


def _publish_snapshot(run: ChangeRun) -> tuple[list[CommittedPart], str]:
    """Make the anchor with its snapshot, publish the table under ``snapshot/``, and store the position."""
    snapshot = run.feed.anchor_with_snapshot(run.plan.overrides, run.plan.tuning)
    failpoints.hit("after_anchor")
    try:
        parts = publish_snapshot_of(run, snapshot.position, snapshot.read)
    finally:
        snapshot.close()
    return parts, snapshot.position


def publish_snapshot_of(run: ChangeRun, position: str, read: Callable[[], BatchReader]) -> list[CommittedPart]:
    """Publish what ``read`` reads of the table at ``position`` under ``snapshot/``, storing the position with it."""
    plan, result = run.plan, run.result
    snapshot_plan = dataclasses.replace(
        plan, mode="full", changes=None, destination=plan.destination.child(SNAPSHOT_FOLDER)
    )
    destination = open_destination(snapshot_plan.destination)
    try:
        run.prepare(destination)
        # The change rows' schema is the one drift follows: the snapshot's is not recorded.
        rows = OutputRows.for_run(snapshot_plan, None, run.events, run.started)
        staged = stage(snapshot_plan, read(), destination, result, None, run.events, rows)
        destination.withdraw_success()
        stem = part_stem(plan.name, run.started)
        parts = commit_parts(destination, staged, stem, plan.format.extension, result.run_id)
        provenance = {"cdc": {"snapshot_at": position, "anchor": run.feed.anchor_name}}
        publication = Publication(
            snapshot_plan, destination, run.state, result, run.started, False, run.lease, provenance
        )
        assert result.schema is not None
        publication.publish(result.schema, parts, on_commit=lambda: run.set_position(STREAMING, position))
    finally:
        destination.cleanup()
    read_rows = sum(p.rows for p in parts)
    log.info("export %s: snapshot of %d row(s) at %s published", plan.name, read_rows, position)
    return list(result.parts)


def complete_snapshot(run: ChangeRun, snapshot_run: str) -> None:
    """Finish a snapshot whose run committed but was stopped before its manifest or ``_SUCCESS``.

    A snapshot run's cumulative manifest lists exactly its own parts, so its own manifest
    (written before the state commit) is copied.
    """
    destination = open_destination(run.plan.destination.child(SNAPSHOT_FOLDER))
    spec = destination.spec
    if destination.read_file(spec.success_name) is not None:
        return
    own = destination.read_file(f"{RUNS_DIR}/{snapshot_run}.json")
    if own is None:
        return  # not the snapshot's run: the snapshot was completed before a later run stored the position
    log.info("export %s: completing the snapshot of run %s", run.plan.name, snapshot_run)
    destination.write_file(spec.manifest_name, own)
    destination.write_file(spec.success_name, success_marker(own))


def _publish_changes(run: ChangeRun, position: str, snapshot: list[CommittedPart]) -> str:
    """Stage the changes from ``position``, publish them with the new position; the new position."""
    plan = run.plan
    destination = open_destination(plan.destination)
    rows = OutputRows.for_run(plan, run.state, run.events, run.started, run.table_check)
    try:
        run.prepare(destination)
        staged, end = read_with_retries(
            run,
            lambda: [position],
            lambda readers: stage(plan, readers[0], destination, run.result, None, run.events, rows),
        )
        publish_staged(run, destination, rows, staged, (position, end), bool(snapshot))
    finally:
        destination.cleanup()
    return end


def publish_staged(
    run: ChangeRun,
    destination: Destination,
    rows: OutputRows,
    staged: list[StagedPart],
    span: tuple[str, str],
    after_snapshot: bool,
) -> None:
    """Publish the staged change parts of the log ``span`` (from, to), the new position in the same state commit."""
    plan, result = run.plan, run.result
    position, end = span
    failpoints.hit("after_part_write")
    if sum(p.rows for p in staged) == 0:
        for part in staged:
            staging.remove(part.path)
        staged = []
        if not after_snapshot:
            result.status = "empty"
    destination.withdraw_success()
    parts = commit_parts(destination, staged, part_stem(plan.name, run.started), plan.format.extension, result.run_id)
    provenance = {"cdc": {"from": position, "to": end, "anchor": run.feed.anchor_name}}
    publication = Publication(
        plan, destination, run.state, result, run.started, True, run.lease, provenance, table_check=run.table_check
    )
    result.schema_drift = rows.drift.drift.to_dict() if rows.drift.drift else None

    def on_commit() -> None:
        run.set_position(STREAMING, end)
        rows.drift.commit(result.run_id, iso(utc_now()))

    assert result.schema is not None
    publication.publish(result.schema, parts, on_commit=on_commit)
    log.info("export %s: changes from %s to %s published", plan.name, position, end)


def _merge_in_commits(run: ChangeRun, keys: tuple[str, ...], start: str) -> str:
    """Merge the changes from ``start`` in commits of ``commit_every_rows``; where they end.

    Each merge is its own table commit and state commit with its position: a backlog is never
    held whole, and a run stopped midway keeps what it merged.
    """
    assert run.plan.changes is not None
    every = run.plan.changes.commit_every_rows or COMMIT_EVERY_ROWS
    at = start

    def resumed() -> list[str]:
        # After a blip past a merge's table commit, that merge is not made again.
        nonlocal at
        at = resume_from_table(run, at)
        return [at]

    def merge_each(readers: list[BatchReader]) -> None:
        nonlocal at
        for changes, next_pos in transaction_chunks(readers[0], run.plan.name, every):
            end = run.feed.drained_to() if next_pos is None else run.feed.position_of(next_pos, at)
            merge_changes(run, keys, changes, at, end)
            at = end

    read_with_retries(run, resumed, merge_each)
    return at


def _say_column_changes(run: ChangeRun) -> None:
    """Say how changes logged under other columns were read: a warning (an event), or a note with continue."""
    level = logging.INFO if run.plan.on_schema_drift == "continue" else logging.WARNING
    for note in run.feed.column_changes():
        log.log(level, "export %s: %s", run.plan.name, note)


def read_with_retries(
    run: ChangeRun, positions: Callable[[], list[str]], consume: Callable[[list[BatchReader]], T]
) -> tuple[T, str]:
    """What ``consume`` makes of the changes of the feed's tables from ``positions()``, and where they end.

    After a blip they are read again, from ``positions()`` then.
    """
    plan = run.plan
    retrier = Retrier(
        plan.name, RetryPolicy(plan.tuning.max_retries, plan.tuning.retry_backoff_ms / 1000), plan.max_attempts,
        run.events,
    )  # fmt: skip
    follow = plan.on_schema_drift != "fail"
    attempt = 0
    while True:
        attempt += 1
        starts = positions()  # once per attempt: for a merge it reads the table's history
        try:
            run.result.engine = "native"
            consumed = consume(run.feed.changes_of(starts, plan.tuning, follow, plan.overrides))
            _say_column_changes(run)
            return consumed, run.feed.drained_to()
        except Exception as e:
            if isinstance(e, QueryError) and e.code in (LOG_SCHEMA_DRIFT, LOG_COLUMN_RETYPED):
                followable = e.code == LOG_SCHEMA_DRIFT and not follow
                raise SchemaDriftError(
                    f"export '{plan.name}': {e}. Nothing more was published and the position is kept. "
                    + (
                        "Set on_schema_drift: warn to read them with the columns now, or start over "
                        if followable
                        else "Start over "
                    )
                    + f"from a snapshot after the change: `{plan.command('cdc drop')}`, then run with "
                    "cdc.initial: snapshot (to a new destination, or after moving the old parts away)"
                ) from e
            if positions() != starts:  # what was read before the blip is kept: a fresh budget of retries
                attempt = 1
            _, wait = retrier.next_attempt(e, attempt)
            if wait is None:
                raise
        time.sleep(wait)
    raise AssertionError("unreachable")
