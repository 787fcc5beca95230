"""Running the exports of a config: one after another, or many at once (threads or processes)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext

from rivet.app.telemetry import Telemetry, start_telemetry
from rivet.config import LoadedConfig
from rivet.core.events import CallbackObserver, Observer
from rivet.core.runinfo import iso, utc_now
from rivet.errors import ConfigError, exit_code_for
from rivet.execution.options import RunOptions
from rivet.execution.results import ExportResult, RunResult
from rivet.plan.export import build_plan
from rivet.state import StateStore, state_location
from rivet.ui import progress
from rivet.ui.cards import Cards

PARALLEL_MODES = (None, "threads", "processes")


def run_config(
    loaded: LoadedConfig,
    exports: Sequence[str] | None = None,
    *,
    options: RunOptions | None = None,
    parallel: str | None = None,
    max_parallel: int | None = None,
    params: Mapping[str, str] | None = None,
    observer: Observer | None = None,
    on_result: Callable[[ExportResult], None] | None = None,
    notify: bool = True,
    show_progress: bool | None = None,
) -> RunResult:
    """Run the selected exports (all by default). One export's failure does not stop the others.

    ``parallel`` is None (one after another), ``threads`` or ``processes``; the
    summary is kept in the state store. With ``notify``, the config's notifications
    are sent at the end (a child process reporting to a parent leaves them to it).
    ``show_progress`` for exports run one after another: True shows it (live, or as
    plain lines), None only where it can be drawn live, False never.
    """
    options = options or RunOptions()
    if parallel not in PARALLEL_MODES:
        raise ConfigError(f"parallel must be one of threads, processes or None, not {parallel!r}")
    telemetry = start_telemetry(loaded)
    if telemetry is not None:
        options = dataclasses.replace(options, traced=telemetry.observer)
    executor = loaded.config.executor
    cluster = None
    exit_code = 1
    try:
        if options.cluster is None and executor.type == "dask":
            from rivet.execution.cluster import Cluster

            assert executor.address is not None
            cluster = Cluster.connect(executor.address)
            options = dataclasses.replace(options, cluster=cluster)
        child_env = telemetry.propagated() if telemetry is not None else {}
        result = _run(
            loaded,
            exports,
            options,
            (parallel, max_parallel, child_env),
            params,
            observer,
            on_result,
            notify,
            show_progress,
        )
        exit_code = result.exit_code
        return result
    except BaseException as e:
        exit_code = exit_code_for(e)
        raise
    finally:
        if cluster is not None:
            cluster.close()
        if telemetry is not None:
            _finish(telemetry, exit_code)


def _finish(telemetry: Telemetry, exit_code: int) -> None:
    """Send the run's telemetry; nothing that happens meanwhile (a stop included) changes the run's outcome."""
    try:
        telemetry.finish(exit_code=exit_code)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the run ended; only its telemetry is cut short
        logging.getLogger("rivet").warning("telemetry: not all of it was sent: %s", type(e).__name__)


def _run(
    loaded: LoadedConfig,
    exports: Sequence[str] | None,
    options: RunOptions,
    fan_out: tuple[str | None, int | None, Mapping[str, str]],
    params: Mapping[str, str] | None,
    observer: Observer | None,
    on_result: Callable[[ExportResult], None] | None,
    notify: bool,
    show_progress: bool | None,
) -> RunResult:
    parallel, max_parallel, child_env = fan_out
    started = utc_now()
    clock = time.perf_counter()
    names = [loaded.export(n).name for n in exports] if exports else [e.name for e in loaded.config.exports]
    if parallel == "processes" and len(names) > 1:
        from rivet.app.fanout import run_processes

        if loaded.path is None:
            raise ConfigError("parallel='processes' needs a config file that the child processes can read")
        results = run_processes(
            loaded, names, max_processes=max_parallel, options=options, params=params, extra_env=child_env
        )
        mode = "processes"
    elif parallel == "threads" and len(names) > 1:
        from rivet.app.fanout import run_threads

        results = run_threads(loaded, names, max_threads=max_parallel, options=options)
        mode = "threads"
    else:
        shown = observer is None and (show_progress or (show_progress is None and progress.live()))
        with Cards(names, live=None) if shown else nullcontext() as cards:
            if cards is not None:
                observer = CallbackObserver(cards.event)
                on_result = _both(cards.finish, on_result)
            results = _run_sequentially(loaded, names, options, observer, on_result)
        mode = "sequential"
    run = RunResult(
        results,
        time.perf_counter() - clock,
        str(loaded.path) if loaded.path else None,
        parallel_mode=mode,
        started_at=iso(started),
    )
    if len(names) > 1:
        state = StateStore(state_location(loaded.base_dir))
        try:
            state.record_aggregate(run.to_dict(), iso(utc_now()))
        finally:
            state.close()
    if notify and loaded.config.notifications is not None:
        from rivet.app.notify import send_notifications  # http.client and ssl: only where they are used

        send_notifications(loaded.config.notifications, run.exports)
    return run


def _both(
    first: Callable[[ExportResult], None], second: Callable[[ExportResult], None] | None
) -> Callable[[ExportResult], None]:
    def call(result: ExportResult) -> None:
        first(result)
        if second is not None:
            second(result)

    return call


def _run_sequentially(
    loaded: LoadedConfig,
    names: Sequence[str],
    options: RunOptions,
    observer: Observer | None,
    on_result: Callable[[ExportResult], None] | None,
) -> list[ExportResult]:
    state = StateStore(state_location(loaded.base_dir))
    results: list[ExportResult] = []
    try:
        for name in names:
            export = loaded.export(name)
            try:
                plan = build_plan(loaded, export)
            except Exception as e:  # noqa: BLE001 - a bad plan fails this export only
                result = ExportResult.failed(name, export.mode, e)
                if observer is not None:
                    finished = result.to_dict()
                    del finished["name"]
                    observer.emit("started", name, run_id=result.run_id, mode=export.mode)
                    observer.emit("finished", name, **finished)
            else:
                result = options.run(plan, state, observer)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        state.close()
    return results
