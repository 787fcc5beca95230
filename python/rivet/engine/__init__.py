"""Engines that execute export plans: one statement stream, or chunks read by worker threads."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rivet.errors import EXIT_OK, exit_code_for
from rivet.events import Observer
from rivet.results import ExportResult
from rivet.runinfo import iso, peak_rss_mb, run_id_for, utc_now

if TYPE_CHECKING:
    from rivet.plan import ExportPlan
    from rivet.state import StateStore


def run_export(
    plan: ExportPlan,
    state: StateStore | None = None,
    *,
    resume: bool = False,
    observer: Observer | None = None,
) -> ExportResult:
    """Run one export end to end, reporting its events to ``observer``.

    A failure is recorded in the result (``status``, ``error``, ``exception``)
    rather than raised; Ctrl-C is recorded and then re-raised.
    """
    from rivet.engine.chunked import run_chunked
    from rivet.engine.single import run_single

    started = utc_now()
    clock = time.perf_counter()
    result = ExportResult(name=plan.name, run_id=run_id_for(plan.name, started), status="running", mode=plan.mode)
    events = observer or Observer()
    if state is not None:
        state.run_started(result.run_id, plan.name, plan.mode, iso(started), plan.fingerprint())
    events.emit("started", plan.name, run_id=result.run_id, mode=plan.mode)
    try:
        if plan.is_parallel:
            run_chunked(plan, state, result, started, resume=resume, observer=observer)
        else:
            run_single(plan, state, result, started, events)
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
        finished = result.to_dict()
        del finished["name"]
        events.emit("finished", plan.name, **finished)
    return result


def _failed(result: ExportResult, error: BaseException, status: str) -> None:
    result.status = status
    result.error = str(error) or type(error).__name__
    result.error_type = type(error).__name__
    result.exit_code = exit_code_for(error)
    result.exception = error


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
