"""One export read by one statement stream (mode ``full``), committed all at once.

Order of effects: read every batch into staged parts; then make the parts
visible, write ``manifest.json``, then ``_SUCCESS``; only then record the
files in the state store. A failure at any point removes what this run made
visible and leaves no ``_SUCCESS``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from rivet.destinations import MANIFEST, SUCCESS, Destination
from rivet.errors import EXIT_OK, exit_code_for
from rivet.formats import StagedPart, open_part_writer
from rivet.manifest import CommittedPart, build_manifest, success_marker
from rivet.results import ExportResult
from rivet.runinfo import iso, part_stem, peak_rss_mb, run_id_for, utc_now

if TYPE_CHECKING:
    from rivet._native import BatchReader
    from rivet.plan import ExportPlan
    from rivet.state import StateStore


def part_names(stem: str, extension: str, count: int) -> list[str]:
    """``stem.ext`` for one part, ``stem_part0.ext`` ... when rotated."""
    if count == 1:
        return [f"{stem}.{extension}"]
    return [f"{stem}_part{i}.{extension}" for i in range(count)]


def run_export(plan: ExportPlan, state: StateStore | None = None) -> ExportResult:
    """Run one export end to end.

    A failure is recorded in the result (``status``, ``error``, ``exception``)
    rather than raised; Ctrl-C is recorded and then re-raised.
    """
    started = utc_now()
    clock = time.perf_counter()
    result = ExportResult(name=plan.name, run_id=run_id_for(plan.name, started), status="running", mode=plan.mode)
    result.engine = f"{plan.source.kind}-native"
    if state is not None:
        state.run_started(result.run_id, plan.name, plan.mode, iso(started), plan.fingerprint())
    try:
        _read_and_commit(plan, started, result)
        result.status, result.exit_code = "success", EXIT_OK
    except Exception as e:  # noqa: BLE001 - any failure is this export's outcome, recorded and reported
        _failed(result, e, "failed")
    except KeyboardInterrupt as e:
        _failed(result, e, "interrupted")
        raise
    finally:
        result.duration_s = time.perf_counter() - clock
        result.peak_rss_mb = peak_rss_mb()
        if state is not None:
            _record(state, result)
    return result


def _failed(result: ExportResult, error: BaseException, status: str) -> None:
    result.status = status
    result.error = str(error) or type(error).__name__
    result.error_type = type(error).__name__
    result.exit_code = exit_code_for(error)
    result.exception = error


def _read_and_commit(plan: ExportPlan, started: dt.datetime, result: ExportResult) -> None:
    destination = Destination(plan.destination)
    reader = plan.source.scan(plan.query, plan.overrides, plan.tuning)
    try:
        schema = pa.schema(reader)
        result.schema = schema
        destination.prepare()
        staged = _read(plan, reader, schema, lambda n: destination.staging_path(result.run_id, n))
        try:
            _commit(plan, destination, staged, schema, started, result)
        finally:
            for part in staged:
                part.path.unlink(missing_ok=True)
    finally:
        reader.close()
        destination.cleanup()


def _read(
    plan: ExportPlan, reader: BatchReader, schema: pa.Schema, staging: Callable[[int], Path]
) -> list[StagedPart]:
    writer = open_part_writer(plan.format, schema, staging, plan.max_file_size)
    try:
        while (batch := reader.next_batch()) is not None:
            writer.write(pa.record_batch(batch))
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _commit(
    plan: ExportPlan,
    destination: Destination,
    staged: list[StagedPart],
    schema: pa.Schema,
    started: dt.datetime,
    result: ExportResult,
) -> None:
    names = part_names(part_stem(plan.name, started), plan.format.extension, len(staged))
    committed: list[CommittedPart] = []
    try:
        for part, name in zip(staged, names, strict=True):
            url = destination.commit(part.path, name)
            committed.append(CommittedPart(name, url, part.rows, part.bytes, part.sha256))
        manifest = build_manifest(
            run_id=result.run_id,
            export=plan.name,
            mode=plan.mode,
            started_at=iso(started),
            finished_at=iso(utc_now()),
            source=plan.source.redacted(),
            fmt=plan.format.kind,
            compression=plan.format.compression,
            schema=schema,
            parts=committed,
        )
        result.manifest = destination.write_file(MANIFEST, manifest)
        destination.write_file(SUCCESS, success_marker(manifest))
    except BaseException:
        destination.remove([p.name for p in committed])
        raise
    result.parts = committed


def _record(state: StateStore, result: ExportResult) -> None:
    finished = iso(utc_now())
    if result.ok:
        state.log_files(
            result.run_id, result.name, [(p.url, p.rows, p.bytes, p.sha256) for p in result.parts], finished
        )
    state.run_finished(
        result.run_id,
        status=result.status,
        finished_at=finished,
        rows=result.rows,
        files=len(result.parts),
        nbytes=result.bytes,
        duration_ms=int(result.duration_s * 1000),
        peak_rss_mb=result.peak_rss_mb,
        engine=result.engine,
        error=result.error,
    )
