"""One export read by one statement stream, committed all at once.

This engine runs modes full (one connection), incremental and time_window.
Order of effects: read every batch into staged parts; then make the parts
visible, write ``manifest.json``, then ``_SUCCESS``; then move the incremental
cursor; only then record the files in the state store. A failure at any point
removes what this run made visible and leaves no ``_SUCCESS``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from rivet.destinations import Destination
from rivet.engine.commit import commit_parts, publish
from rivet.engine.filters import CursorTracker, where, window_predicate
from rivet.engine.integrity import check_read
from rivet.errors import ConfigError
from rivet.formats import StagedPart, open_part_writer
from rivet.runinfo import iso, part_stem, utc_now
from rivet.sources.fastpath import ConnectorxReader, ConnectorxScanner, FastPathError, choose_engine

log = logging.getLogger("rivet")

# Seconds between two progress events of a single-stream export.
PROGRESS_EVERY_S = 1.0

if TYPE_CHECKING:
    from rivet._native import BatchReader
    from rivet.events import Observer
    from rivet.plan import ExportPlan
    from rivet.results import ExportResult
    from rivet.state import StateStore


def _shaped_query(plan: ExportPlan, state: StateStore | None, started: dt.datetime) -> tuple[str, CursorTracker | None]:
    """The query with the mode's filter, and the cursor tracker of an incremental run."""
    if plan.window is None and plan.cursor is None:
        return plan.query, None
    schema = plan.source.describe(plan.query, plan.overrides)
    if plan.window is not None:
        return where(plan.query, window_predicate(plan.window, schema, plan.source, started)), None
    assert plan.cursor is not None
    if state is None:
        raise ConfigError(f"export '{plan.name}': incremental mode keeps its cursor in a state store (give state_dir)")
    tracker = CursorTracker(plan.cursor, schema, plan.source)
    stored = state.cursor(plan.name)
    predicate = tracker.predicate(stored["sql_literal"] if stored else None)
    return (where(plan.query, predicate) if predicate else plan.query), tracker


def run_single(
    plan: ExportPlan, state: StateStore | None, result: ExportResult, started: dt.datetime, events: Observer
) -> None:
    """Read, stage, commit and publish one export."""
    query, tracker = _shaped_query(plan, state, started)
    fast = _fast_scanner(plan, query)
    destination = Destination(plan.destination)
    try:
        staged: list[StagedPart] | None = None
        if fast is not None:
            result.engine = "connectorx"
            try:
                staged = _stage(plan, fast.open(query), destination, result, tracker, events)
            except FastPathError as e:
                log.warning("export %s: %s; the native reader reads it", plan.name, e)
                result.engine = "native"
                if tracker is not None:
                    tracker.value = None
        if staged is None:
            staged = _stage(
                plan,
                plan.source.scan(query, plan.overrides, plan.tuning, reconcile=plan.reconcile),
                destination,
                result,
                tracker,
                events,
            )
        assert result.schema is not None
        parts = commit_parts(destination, staged, part_stem(plan.name, started), plan.format.extension)
        try:
            publish(plan, destination, result, result.schema, parts, started)
        except BaseException:
            destination.remove([p.name for p in parts])
            raise
    finally:
        destination.cleanup()
    if tracker is not None and state is not None and tracker.value is not None:
        state.set_cursor(plan.name, str(tracker.value), tracker.literal() or "", result.run_id, iso(utc_now()))


def _fast_scanner(plan: ExportPlan, query: str) -> ConnectorxScanner | None:
    """The connectorx scanner when ``source.engine`` picks connectorx for this export, else None."""
    if plan.engine == "native":
        return None
    schema = plan.source.describe(query, plan.overrides)
    choice = choose_engine(plan, schema, chunked=False)
    log.info("export %s reads with the %s reader (%s)", plan.name, choice.engine, choice.reason)
    return ConnectorxScanner.for_plan(plan, schema) if choice.engine == "connectorx" else None


def _stage(
    plan: ExportPlan,
    reader: BatchReader | ConnectorxReader,
    destination: Destination,
    result: ExportResult,
    tracker: CursorTracker | None,
    events: Observer,
) -> list[StagedPart]:
    """Every batch of ``reader`` written into staged (not yet visible) parts."""
    try:
        schema = reader.schema if isinstance(reader, ConnectorxReader) else pa.schema(reader)
        result.schema = schema
        destination.prepare()
        return _read(plan, reader, schema, lambda n: destination.staging_path(result.run_id, n), tracker, events)
    finally:
        reader.close()


def _read(
    plan: ExportPlan,
    reader: BatchReader | ConnectorxReader,
    schema: pa.Schema,
    staging: Callable[[int], Path],
    tracker: CursorTracker | None,
    events: Observer,
) -> list[StagedPart]:
    writer = open_part_writer(plan.format, schema, staging, plan.max_file_size)
    rows, reported = 0, time.monotonic()
    try:
        while (next_batch := reader.next_batch()) is not None:
            batch = pa.record_batch(next_batch)
            if tracker is not None:
                tracker.observe(batch)
            writer.write(batch)
            rows += batch.num_rows
            if time.monotonic() - reported >= PROGRESS_EVERY_S:
                events.emit("progress", plan.name, rows=rows)
                reported = time.monotonic()
        parts = writer.close()
        check_read(reader, sum(p.rows for p in parts), f"export {plan.name}")
        return parts
    except BaseException:
        writer.abort()
        raise
