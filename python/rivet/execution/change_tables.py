"""Change capture of several tables through one slot or binary log connection (``tables:``).

The log is read once for all the tables. Each table is published as an export of its own
would be (:meth:`ExportPlan.table_plans`): its snapshot and change parts under
``<destination>/<table>/``, its own manifest, and its own position, moved in the state commit
that publishes its parts. A run stopped between two tables' commits therefore goes on from
each table's own position: the next read starts at the earliest, and a table skips the
transactions it published already. The server is told it may free the log only up to where
every table has published.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from rivet.core import failpoints
from rivet.core.runinfo import iso, part_stem, run_id_for, utc_now
from rivet.errors import CancelledError, ConfigError, exit_code_for
from rivet.execution.changes import (
    ChangeRun,
    complete_snapshot,
    publish_snapshot_of,
    publish_staged,
    read_with_retries,
    say_lag,
    start_anchoring,
    stored_position,
)
from rivet.execution.results import ExportResult
from rivet.execution.rows import OutputRows
from rivet.execution.single import stage
from rivet.state.changes import STREAMING
from rivet.storage import staging
from rivet.storage.destinations import Destination, open_destination

if TYPE_CHECKING:
    from rivet._native import BatchReader
    from rivet.output import StagedPart
    from rivet.plan.export import ExportPlan

log = logging.getLogger("rivet")


def run_table_changes(stream: ChangeRun) -> None:
    """Anchor (and snapshot) the tables on the first run, then publish each one's changes since its position."""
    state = stream.state
    runs = [_table_run(stream, plan) for plan in stream.plan.table_plans()]
    for run in runs:
        plan = run.plan
        state.run_started(
            run.result.run_id, plan.key, plan.mode, iso(run.started), plan.fingerprint(), plan.destination.url,
            part_stem(plan.name, run.started),
        )  # fmt: skip
    error: BaseException | None = None
    try:
        snapshots, starts = _positions(stream, runs)
        say_lag(stream, stream.feed.earliest(starts))
        end = _publish_changes(stream, runs, starts, snapshots)
        failpoints.hit("before_confirm")
        stream.feed.confirm(end)
        # For people (rivet metrics): where the tables are; each table's own position is what is read from.
        stream.set_position(STREAMING, end)
    except BaseException as e:
        error = e
        raise
    finally:
        stream.feed.close()
        _finish(stream, runs, error)


def _table_run(stream: ChangeRun, plan: ExportPlan) -> ChangeRun:
    result = ExportResult(
        name=plan.name, run_id=run_id_for(plan.name, stream.started), status="running", mode=plan.mode
    )
    return dataclasses.replace(stream, plan=plan, result=result, table_check=None)


def _positions(stream: ChangeRun, runs: list[ChangeRun]) -> tuple[list[bool], list[str]]:
    """Each table's position (anchoring, and publishing the snapshots, on a first run); whether it has a snapshot."""
    plan, feed = stream.plan, stream.feed
    stored = stored_position(stream)
    if stored is not None and stored.phase == STREAMING:
        assert stored.position is not None
        starts = [_table_position(stream, run, stored.position) for run in runs]
        return [False] * len(runs), starts
    start_anchoring(stream, stored)
    assert plan.changes is not None
    if plan.changes.initial == "snapshot":
        snapshot = feed.anchor_with_snapshot(plan.overrides, plan.tuning)
        failpoints.hit("after_anchor")
        try:
            for run, read in zip(runs, snapshot.reads, strict=True):
                run.result.parts = publish_snapshot_of(run, snapshot.position, read)
        finally:
            snapshot.close()
        position = snapshot.position
    else:
        position = feed.anchor()
        with stream.state.transaction():
            for run in runs:
                run.set_position(STREAMING, position)
    stream.set_position(STREAMING, position)
    log.info("export %s: anchored at %s (%s) for %d tables", plan.name, position, feed.anchor_name, len(runs))
    return [plan.changes.initial == "snapshot"] * len(runs), [position] * len(runs)


def _table_position(stream: ChangeRun, run: ChangeRun, streamed_to: str) -> str:
    """Where ``run``'s table reads from: its own position, refused when the stream went on without it."""
    plan, feed = stream.plan, stream.feed
    own = run.state.change_position(run.plan.key)
    table = run.plan.name.removeprefix(plan.name + ".")
    if own is None or own.position is None or own.phase != STREAMING:
        why = "has no position in the stream: it joined tables: after the stream began, and its changes before now"
    elif own.position != streamed_to and feed.earliest([own.position, streamed_to]) == own.position:
        why = (
            f"was last published at {own.position}, and the stream has gone on to {streamed_to} without it (it "
            "left tables: and came back): its changes in between"
        )
    else:
        feed.check(own.position)
        complete_snapshot(run, own.run_id)
        return own.position
    raise ConfigError(
        f"export '{plan.name}': table {table} {why} cannot be read ({feed.anchor_name}). Capture it in an export of "
        f"its own (with cdc.initial: snapshot), or start the whole stream over: `{plan.command('cdc drop')}`, then "
        "run with cdc.initial: snapshot"
    )


def _publish_changes(stream: ChangeRun, runs: list[ChangeRun], starts: list[str], snapshots: list[bool]) -> str:
    """Stage every table's changes from its start in one read of the log, then publish each table; the log's end."""
    destinations = [open_destination(run.plan.destination) for run in runs]
    rows = [OutputRows.for_run(run.plan, run.state, run.events, run.started) for run in runs]
    snapshot_parts = [list(run.result.parts) for run in runs]
    try:
        for run, destination in zip(runs, destinations, strict=True):
            run.prepare(destination)
        staged, end = read_with_retries(
            stream, lambda: starts, lambda readers: _stage_all(runs, readers, destinations, rows)
        )
        for run, destination, table_rows, parts, start, snapshot in zip(
            runs, destinations, rows, staged, starts, snapshots, strict=True
        ):
            publish_staged(run, destination, table_rows, parts, (start, end), snapshot)
            if run.result.status == "running":
                run.result.status = "success"
    finally:
        for destination in destinations:
            destination.cleanup()
    for run, before in zip(runs, snapshot_parts, strict=True):
        run.result.parts = before + run.result.parts
    return end


def _stage_all(
    runs: list[ChangeRun], readers: list[BatchReader], destinations: list[Destination], rows: list[OutputRows]
) -> list[list[StagedPart]]:
    """Every table's changes staged at once, a thread each: the readers of one log read end together."""
    with ThreadPoolExecutor(max_workers=len(runs), thread_name_prefix="rivet-table") as pool:
        futures = [
            pool.submit(stage, run.plan, reader, destination, run.result, None, run.events, table_rows)
            for run, reader, destination, table_rows in zip(runs, readers, destinations, rows, strict=True)
        ]
        try:
            wait(futures)
        except BaseException:
            for reader in readers:
                reader.cancel()  # the others stop with it: one log read feeds them all
            raise
    failures = [e for f in futures if (e := f.exception()) is not None]
    if failures:
        _remove_staged(futures)
        raise _first_cause(failures)
    return [f.result() for f in futures]


def _remove_staged(futures: list[Future[list[StagedPart]]]) -> None:
    """Remove the parts the tables that did stage wrote: a retry stages them again."""
    for future in futures:
        if future.exception() is None:
            for part in future.result():
                staging.remove(part.path)


def _first_cause(failures: list[BaseException]) -> BaseException:
    """The failure that stopped the read, rather than the cancellation it caused in the other tables' readers."""
    return next((f for f in failures if not isinstance(f, CancelledError)), failures[0])


def _finish(stream: ChangeRun, runs: list[ChangeRun], error: BaseException | None) -> None:
    """Record each table's run, and sum them up in the export's result."""
    from rivet.core.redact import redact_text
    from rivet.execution import record_run

    for run in runs:
        result = run.result
        if result.status == "running" and error is not None:
            result.status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            result.error = redact_text(str(error)) or type(error).__name__
            result.exit_code = exit_code_for(error)
        elif result.status == "running":
            result.status = "success"
        result.duration_s = (utc_now() - run.started).total_seconds()
        try:
            record_run(stream.state, run.plan.key, result)
        except Exception as e:  # noqa: BLE001 - the export's own outcome stands; its history is best effort
            log.warning("export %s: recording run %s in the state store failed: %s", run.plan.name, result.run_id, e)
    stream.result.parts = [p for run in runs for p in run.result.parts]
    if error is None and all(run.result.status == "empty" for run in runs):
        stream.result.status = "empty"
