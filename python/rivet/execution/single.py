"""One export read by one statement stream, committed all at once.

This engine runs modes full (one connection), incremental and time_window. A read
that fails on a transient fault (connection lost, backend terminated, serialization
failure, too many connections) is retried whole on a new connection, its staged
parts discarded, up to the export's attempts. The output is committed by
``rivet.execution.commit``: parts, manifests, one state commit (which moves the
cursor), then ``_SUCCESS``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from rivet.core import failpoints
from rivet.core.events import LatestProgress
from rivet.core.retry import Retrier, RetryPolicy
from rivet.core.runinfo import iso, part_stem, utc_now
from rivet.errors import ConfigError, SourceConnectionError
from rivet.execution.appends import CURSOR_SCOPE, AppendCursor, as_text, open_cursor
from rivet.execution.commit import Publication, commit_parts
from rivet.execution.filters import where
from rivet.execution.integrity import check_read
from rivet.execution.merge import upsert_staged
from rivet.execution.rows import OutputRows
from rivet.output import StagedPart, open_part_writer
from rivet.plan.reader import choose_engine, connectorx_scanner
from rivet.sources.connectorx import ConnectorxReader, ConnectorxScanner, FastPathError
from rivet.sources.network import NetworkSource
from rivet.storage import staging
from rivet.storage.destinations import Destination, open_destination

log = logging.getLogger("rivet")

# Seconds between two progress events of a single-stream export.
PROGRESS_EVERY_S = 1.0

if TYPE_CHECKING:
    from rivet._native import BatchReader
    from rivet.core.events import Observer
    from rivet.execution.results import ExportResult
    from rivet.output.tables import TableCheck
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore
    from rivet.state.lease import ExportLease


def _shaped_query(
    plan: ExportPlan, state: StateStore | None, destination: Destination, started: dt.datetime
) -> tuple[str, AppendCursor | None]:
    """The query with the mode's filter, and the cursor of an appending run."""
    if not plan.appends:
        return plan.query, None
    if state is None:
        if plan.cursor is not None:
            raise ConfigError(
                f"export '{plan.name}': incremental mode keeps its cursor in a state store (give state_dir)"
            )
        # Without a state store a time window cannot append exactly once: each run replaces the last.
        from rivet.execution.filters import sql_literal, window_start

        assert plan.window is not None
        schema = plan.source.describe(plan.query, plan.overrides)
        start = window_start(plan.window, schema, plan.source, started)
        column = plan.source.quote_identifier(plan.window.column)
        return where(plan.query, f"{column} >= {sql_literal(plan.source, start.as_py())}"), None
    schema = plan.source.describe(plan.query, plan.overrides)
    scope = CURSOR_SCOPE if plan.cursor is not None else destination.spec.url
    cursor, predicate = open_cursor(plan, schema, state, scope, started)
    return (where(plan.query, predicate) if predicate else plan.query), cursor


def run_single(
    plan: ExportPlan,
    state: StateStore | None,
    result: ExportResult,
    started: dt.datetime,
    events: Observer,
    lease: ExportLease | None = None,
    table_check: TableCheck | None = None,
) -> None:
    """Read (retrying transient faults), stage, then commit and publish one export."""
    destination = open_destination(plan.destination)
    query, cursor = _shaped_query(plan, state, destination, started)
    fast = _fast_scanner(plan, query)
    rows = OutputRows.for_run(plan, state, events, started, table_check)
    retrier = Retrier(
        plan.name, RetryPolicy(plan.tuning.max_retries, plan.tuning.retry_backoff_ms / 1000), plan.max_attempts, events
    )
    try:
        destination.prepare(plan.name, exclusive=lease is not None, spared_run=lease.spared_run if lease else None)
        events.emit("progress_init", plan.name, estimated_rows=_estimated_rows(plan, query))
        staged = _read_with_retries(SingleRead(plan, query, fast, destination, result, cursor, events, rows), retrier)
        failpoints.hit("after_part_write")
        if plan.skip_empty and sum(p.rows for p in staged) == 0:
            for part in staged:
                staging.remove(part.path)
            log.info("export %s read no rows: skipped (skip_empty), nothing published", plan.name)
            result.status = "skipped"
            return
        if plan.merge_keys is not None:
            assert state is not None and cursor is not None, "write: merge is checked to be incremental"
            committed = partial(_committed, cursor, rows, state, result)
            upsert_staged(plan, state, result, staged, lease, table_check, committed)
            return
        append = plan.appends and state is not None
        if append and sum(p.rows for p in staged) == 0:
            for part in staged:
                staging.remove(part.path)
            staged = []
            result.status = "empty"
        destination.withdraw_success()
        parts = commit_parts(destination, staged, part_stem(plan.name, started), plan.format.extension, result.run_id)
        publication = Publication(
            plan, destination, state, result, started, append, lease, _provenance(cursor), table_check=table_check
        )
        assert result.schema is not None
        result.schema_drift = rows.drift.drift.to_dict() if rows.drift.drift else None

        publication.publish(result.schema, parts, on_commit=partial(_committed, cursor, rows, state, result))
    finally:
        destination.cleanup()


def _committed(cursor: AppendCursor | None, rows: OutputRows, state: StateStore | None, result: ExportResult) -> None:
    """What moves in the run's state commit: the cursor, and the published schema."""
    if cursor is not None and state is not None:
        cursor.commit(state, result.run_id)
    rows.drift.commit(result.run_id, iso(utc_now()))


def _provenance(cursor: AppendCursor | None) -> dict[str, object]:
    """What a manifest says about the rows an appending run read."""
    if cursor is None:
        return {}
    return {
        "cursor": {
            "column": cursor.column,
            "after": as_text(cursor.stored) if cursor.stored is not None else None,
            "up_to": as_text(cursor.top) if cursor.top is not None else None,
            "boundary_rows_skipped": cursor.skipped,
        }
    }


@dataclass(frozen=True)
class SingleRead:
    """One single-stream read: its plan and query, the reader to try first, and where its rows go."""

    plan: ExportPlan
    query: str
    fast: ConnectorxScanner | None
    destination: Destination
    result: ExportResult
    cursor: AppendCursor | None
    events: Observer
    rows: OutputRows

    def stage(self, reader: BatchReader | ConnectorxReader) -> list[StagedPart]:
        """Every batch of ``reader`` written into staged parts."""
        return stage(self.plan, reader, self.destination, self.result, self.cursor, self.events, self.rows)


def _read_with_retries(read: SingleRead, retrier: Retrier) -> list[StagedPart]:
    """Every row staged into parts; a transient fault restarts the read on a new connection."""
    for attempt in count(1):
        clock = time.perf_counter()
        try:
            return _read_once(read)
        except Exception as e:
            if read.cursor is not None:
                read.cursor.reset()
            if attempt == 1 and _unreachable(e) and not _tunnelled(read.plan):
                raise
            _, wait = retrier.next_attempt(e, attempt)
            if wait is None:
                raise
        finally:
            # The statement lasts as long as its rows are read: each attempt is one.
            read.result.reads.add(time.perf_counter() - clock)
        time.sleep(wait)
    raise AssertionError("unreachable")


def _unreachable(error: BaseException) -> bool:
    """A first connection that failed without a server's word: a wrong address, not a blip."""
    return isinstance(error, SourceConnectionError) and not error.lost and error.code is None


def _tunnelled(plan: ExportPlan) -> bool:
    """Whether connections go through an SSH tunnel.

    Its local end is always there, so a first connection it closes is the bastion's trouble
    reaching the database (or a blip), retried like a lost one.
    """
    return isinstance(plan.source, NetworkSource) and plan.source.ssh is not None


def _read_once(read: SingleRead) -> list[StagedPart]:
    plan, result = read.plan, read.result
    if read.fast is not None:
        result.engine = "connectorx"
        try:
            return read.stage(read.fast.open(read.query))
        except FastPathError as e:
            log.warning("export %s: %s; the native reader reads it", plan.name, e)
            if read.cursor is not None:
                read.cursor.reset()
    result.engine = "native"
    return read.stage(plan.source.scan(read.query, plan.overrides, plan.tuning, reconcile=plan.reconcile))


def _estimated_rows(plan: ExportPlan, query: str) -> int | None:
    """The optimizer's row estimate for the progress display (None: not known)."""
    from rivet.plan.estimates import estimated_rows
    from rivet.sources.network import NetworkSource

    if not isinstance(plan.source, NetworkSource):
        return None
    try:
        return estimated_rows(plan.source.session(), plan.source.dialect, query)
    except Exception as e:  # noqa: BLE001 - an estimate only draws a bar; the export does not need it
        # Said once, quietly: a failure that matters fails the read itself, and is reported there.
        log.debug("export %s: no row estimate for the progress display: %s", plan.name, e)
        return None


def _fast_scanner(plan: ExportPlan, query: str) -> ConnectorxScanner | None:
    """The connectorx scanner when ``source.engine`` picks connectorx for this export, else None."""
    if plan.engine == "native":
        return None
    schema = plan.source.describe(query, plan.overrides)
    channel = plan.source.channel() if isinstance(plan.source, NetworkSource) else None
    choice = choose_engine(plan, schema, chunked=False, channel=channel)
    log.info("export %s reads with the %s reader (%s)", plan.name, choice.engine, choice.reason)
    return connectorx_scanner(plan, schema, channel) if choice.engine == "connectorx" else None


def stage(
    plan: ExportPlan,
    reader: BatchReader | ConnectorxReader,
    destination: Destination,
    result: ExportResult,
    cursor: AppendCursor | None,
    events: Observer,
    rows: OutputRows,
) -> list[StagedPart]:
    """Every batch of ``reader`` written into staged (not yet visible) parts."""
    try:
        source_schema = reader.schema if isinstance(reader, ConnectorxReader) else pa.schema(reader)
        schema = result.schema = rows.open(source_schema, destination)
        if cursor is not None and rows.drift.drift is not None:
            cursor.added_columns = rows.drift.drift.added_names
        staging = partial(destination.staging_path, result.run_id)
        return _read(plan, reader, schema, staging, cursor, events, rows)
    finally:
        reader.close()


def _read(
    plan: ExportPlan,
    reader: BatchReader | ConnectorxReader,
    schema: pa.Schema,
    staging: Callable[[int], Path],
    cursor: AppendCursor | None,
    events: Observer,
    rows: OutputRows,
) -> list[StagedPart]:
    """Stage every row; the quality gates run on what was written before anything is published.

    ``schema`` is the output's: the reader's columns and the meta columns ``rows`` adds.
    """
    writer = open_part_writer(plan.format, schema, staging, plan.max_file_size, partitioning=plan.partitioning)
    written = 0
    try:
        with LatestProgress(events, plan.name, PROGRESS_EVERY_S) as progress:
            while (next_batch := reader.next_batch()) is not None:
                batch = pa.record_batch(next_batch)
                if cursor is not None:
                    batch = cursor.observe(batch)
                writer.write(rows(batch))
                written += batch.num_rows
                progress.update(rows=written, bytes=writer.bytes_written())
        parts = writer.close()
        skipped = cursor.skipped if cursor is not None else 0
        check_read(reader, sum(p.rows for p in parts) + skipped, f"export {plan.name}")
        rows.finish()
        return parts
    except BaseException:
        writer.abort()
        raise
