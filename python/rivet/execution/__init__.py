"""Engines that execute export plans: one statement stream, or chunks read by worker threads."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from rivet.core import failpoints
from rivet.core.events import Journal, Observer
from rivet.core.redact import redact_text
from rivet.core.runinfo import iso, part_stem, peak_rss_mb, run_id_for, utc_now
from rivet.errors import EXIT_OK, SchemaDriftError, exit_code_for
from rivet.execution.results import ExportResult

if TYPE_CHECKING:
    from rivet.execution.cluster import Cluster
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore
    from rivet.state.keys import ExportKey

log = logging.getLogger("rivet")


def run_export(
    plan: ExportPlan,
    state: StateStore | None = None,
    *,
    resume: bool = False,
    wait: bool = False,
    observer: Observer | None = None,
    cluster: Cluster | None = None,
) -> ExportResult:
    """Run one export end to end, reporting its events to ``observer``; ``cluster`` reads its chunks.

    With a state store the run first takes the export's lease: a second run of the
    same export is refused (or waits, with ``wait``). A failure is recorded in the
    result (``status``, ``error``, ``exception``) rather than raised; Ctrl-C is
    recorded and then re-raised.
    """
    from rivet.execution.changes import run_changes
    from rivet.execution.chunked import run_chunked
    from rivet.execution.single import run_single
    from rivet.output.tables import TableCheck
    from rivet.state.lease import ExportLease

    started = utc_now()
    clock = time.perf_counter()
    result = ExportResult(name=plan.name, run_id=run_id_for(plan.name, started), status="running", mode=plan.mode)
    events = Journal(ReadTimesOf(result, observer))
    lease = ExportLease(state, plan.key, result.run_id, wait=wait) if state is not None else None
    events.emit("started", plan.name, run_id=result.run_id, mode=plan.mode, throttle_ms=plan.tuning.throttle_ms)
    # Every warning logged about this export is also one of its events, so --json counts what was said.
    said = WarningEvents(plan.name, events)
    log.addHandler(said)
    table_check = None
    try:
        failpoints.check()
        if plan.table_format is not None:
            assert plan.lake_table is not None
            table_check = TableCheck(plan.name, plan.lake_table, plan.destination, plan.partitioning)
        if lease is not None and state is not None:
            assert plan.identity is not None
            notice = state.bind(plan.key, plan.identity, plan.config_path)
            if notice is not None:
                log.warning("%s", notice)
            lease.acquire()
            state.run_started(
                result.run_id,
                plan.key,
                plan.mode,
                iso(started),
                plan.fingerprint(),
                plan.destination.url,
                part_stem(plan.name, started),
            )
        if cluster is not None and not plan.is_parallel:
            log.info("export %s is not chunked: it runs in this process, not on the Dask cluster", plan.name)
        if plan.changes is not None:
            run_changes(plan, state, result, started, events, lease, table_check)
        elif plan.is_parallel:
            run_chunked(
                plan,
                state,
                result,
                started,
                resume=resume,
                observer=events,
                lease=lease,
                table_check=table_check,
                cluster=cluster,
            )
        else:
            run_single(plan, state, result, started, events, lease, table_check)
        if result.status == "running":
            result.status = "success"
        result.exit_code = EXIT_OK
    except Exception as e:  # noqa: BLE001 - any failure is this export's outcome, recorded and reported
        _failed(result, e, "failed")
    except KeyboardInterrupt as e:
        _failed(result, e, "interrupted")
        raise
    finally:
        if table_check is not None:
            table_check.finish()
        log.removeHandler(said)
        result.duration_s = time.perf_counter() - clock
        result.peak_rss_mb = peak_rss_mb()
        result.retries = sum(e["type"] == "retry" for e in events.events)
        result.warnings = sum(e["type"] in ("warning", "shape_drift") for e in events.events)
        finished = result.to_dict()
        del finished["name"]
        try:
            if state is not None and (lease is None or lease.held):
                record_run(state, plan.key, result)
                journal = [*events.events, events.make("finished", plan.name, **finished)]
                state.save_journal(result.run_id, plan.key, iso(utc_now()), journal)
        except Exception as e:  # noqa: BLE001 - the export's own outcome stands; its history is best effort
            log.warning("export %s: recording run %s in the state store failed: %s", plan.name, result.run_id, e)
        finally:
            if lease is not None:
                lease.release()
        events.emit("finished", plan.name, **finished)
    return result


class ReadTimesOf(Observer):
    """Adds the read time of each chunk event to the run's, then passes every event on."""

    def __init__(self, result: ExportResult, inner: Observer | None) -> None:
        self.result, self.inner = result, inner or Observer()

    def emit(self, kind: str, export: str, **fields: object) -> None:
        """Count a chunk's read, pass the event on."""
        if kind == "chunk":
            self.result.reads.add(float(fields["read_s"]))  # type: ignore[arg-type]
        self.inner.emit(kind, export, **fields)


class WarningEvents(logging.Handler):
    """Turns the warnings logged about one export (``export NAME: ...``) into its ``warning`` events."""

    def __init__(self, export: str, events: Observer) -> None:
        super().__init__(logging.WARNING)
        self.events = events
        self.export = export
        self.mentions = re.compile(rf"\bexport '?{re.escape(export)}(?:'|:|\s|$)")

    def emit(self, record: logging.LogRecord) -> None:
        """Add the record as a warning event when it is about this export."""
        message = record.getMessage()
        if record.levelno == logging.WARNING and self.mentions.search(message):
            self.events.emit("warning", self.export, message=redact_text(message))


def _failed(result: ExportResult, error: BaseException, status: str) -> None:
    result.status = status
    if isinstance(error, SchemaDriftError) and error.drift is not None:
        result.schema_drift = error.drift  # what stopped the export is part of its outcome
    result.error = redact_text(str(error)) or type(error).__name__
    result.error_type = type(error).__name__
    result.exit_code = exit_code_for(error)
    result.exception = error


def record_run(state: StateStore, key: ExportKey, result: ExportResult) -> None:
    """Record how run ``result`` ended, and the parts it published."""
    finished = iso(utc_now())
    if result.ok:
        state.log_files(result.run_id, key, [(p.url, p.rows, p.bytes, p.sha256) for p in result.parts], finished)
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
        retries=result.retries,
        reads=result.reads.totals(),
    )
