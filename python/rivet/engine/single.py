"""One export read by one statement stream, committed all at once.

This engine runs modes full (one connection), incremental and time_window.
Order of effects: read every batch into staged parts; then make the parts
visible, write ``manifest.json``, then ``_SUCCESS``; then move the incremental
cursor; only then record the files in the state store. A failure at any point
removes what this run made visible and leaves no ``_SUCCESS``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from rivet.destinations import Destination
from rivet.engine.commit import commit_parts, publish
from rivet.engine.filters import CursorTracker, where, window_predicate
from rivet.errors import ConfigError
from rivet.formats import StagedPart, open_part_writer
from rivet.runinfo import iso, part_stem, utc_now

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
    destination = Destination(plan.destination)
    reader = plan.source.scan(query, plan.overrides, plan.tuning)
    try:
        schema = pa.schema(reader)
        result.schema = schema
        destination.prepare()
        staged = _read(plan, reader, schema, lambda n: destination.staging_path(result.run_id, n), tracker, events)
        parts = commit_parts(destination, staged, part_stem(plan.name, started), plan.format.extension)
        try:
            publish(plan, destination, result, schema, parts, started)
        except BaseException:
            destination.remove([p.name for p in parts])
            raise
    finally:
        reader.close()
        destination.cleanup()
    if tracker is not None and state is not None and tracker.value is not None:
        state.set_cursor(plan.name, str(tracker.value), tracker.literal() or "", result.run_id, iso(utc_now()))


def _read(
    plan: ExportPlan,
    reader: BatchReader,
    schema: pa.Schema,
    staging: Callable[[int], Path],
    tracker: CursorTracker | None,
    events: Observer,
) -> list[StagedPart]:
    writer = open_part_writer(plan.format, schema, staging, plan.max_file_size)
    rows, reported = 0, time.monotonic()
    try:
        while (native := reader.next_batch()) is not None:
            batch = pa.record_batch(native)
            if tracker is not None:
                tracker.observe(batch)
            writer.write(batch)
            rows += batch.num_rows
            if time.monotonic() - reported >= PROGRESS_EVERY_S:
                events.emit("progress", plan.name, rows=rows)
                reported = time.monotonic()
        return writer.close()
    except BaseException:
        writer.abort()
        raise
