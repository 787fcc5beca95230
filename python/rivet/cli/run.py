"""``rivet run``: run the exports of a config file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rivet.cli._output import emit_json, failed_exports, report_error, say
from rivet.errors import ConfigError

if TYPE_CHECKING:
    from rivet.config import ExportConfig, LoadedConfig
    from rivet.execution.results import RunResult

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The rivet.yaml to run.", exists=False, dir_okay=False)
]
ExportOption = Annotated[list[str] | None, typer.Option("--export", "-e", help="Run only this export (repeatable).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")]
ParamOption = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE for ${KEY} in the config (repeatable).")
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted checkpointed chunked run, reading only what is left.")
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="If the export is already running, wait for that run instead of failing.")
]
ValidateOption = Annotated[
    bool, typer.Option("--validate", help="Read every new part back (rows, SHA-256) before the run commits.")
]
ReconcileOption = Annotated[
    bool,
    typer.Option("--reconcile", help="Compare every read with a COUNT(*) in its own snapshot; a mismatch fails."),
]
ThreadsOption = Annotated[bool, typer.Option("--parallel-exports", help="Run the exports at once, as threads.")]
ProcessesOption = Annotated[
    bool,
    typer.Option("--parallel-export-processes", help="Run each export in its own process (isolated), at once."),
]
DaskOption = Annotated[
    str | None,
    typer.Option(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="Read the chunks of chunked exports on this Dask cluster (tcp://host:8786); needs rivet[dask].",
    ),
]
MaxOption = Annotated[
    int | None, typer.Option("--max-processes", min=1, help="At most this many exports at once (default: cores).")
]
SummaryOption = Annotated[
    Path | None, typer.Option("--summary-output", help="Write the run summary as JSON to this file.")
]
EventsOption = Annotated[
    bool, typer.Option("--events", hidden=True, help="Report JSON-line events on stdout (for a parent process).")
]


FollowOption = Annotated[
    bool,
    typer.Option("--follow", help="mode: cdc: run again every --every seconds until stopped (Ctrl-C or SIGTERM)."),
]
EveryOption = Annotated[
    float | None,
    typer.Option(
        "--every",
        min=0,
        help="With --follow: seconds between two runs (default: the exports' cdc.commit_every_s, or 10).",
    ),
]


MetricsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--metrics-file",
        help="After each run, write the exports' metrics in the Prometheus text format to this file, atomically "
        "(for node_exporter's textfile collector).",
    ),
]


def stdout_exports(exports: list[ExportConfig], *, events: bool, processes: bool, validate: bool = False) -> bool:
    """Whether one of ``exports`` writes its file to stdout; refused where stdout is taken or unreadable."""
    if not any(e.writes_to_stdout for e in exports):
        return False
    if validate:
        raise ConfigError("--validate reads the parts back, which a file written to stdout cannot be")
    if events or processes:
        raise ConfigError(
            "an export with destination type stdout cannot run in a child process (its stdout carries events); "
            "run it on its own or with --parallel-exports"
        )
    return True


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` items as a dict (the last of duplicates wins).

    They go over those a parent process passed in ``RIVET_PARAMS`` (never on a command
    line, where other users of the machine could read them).
    """
    import os

    inherited = os.environ.get("RIVET_PARAMS")
    params: dict[str, str] = {}
    if inherited:
        try:
            params.update({str(k): str(v) for k, v in json.loads(inherited).items()})
        except (ValueError, AttributeError):
            raise typer.BadParameter("RIVET_PARAMS is not a JSON object of parameters") from None
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got '{item}'", param_hint="--param")
        params[key] = value
    return params


def _on_sigterm(signum: int, frame: object) -> None:
    # Stop like Ctrl-C: readers are cancelled and nothing half-written becomes visible.
    raise KeyboardInterrupt


# Seconds between two --follow runs when neither --every nor cdc.commit_every_s says.
FOLLOW_EVERY_S = 10.0


def _check_follow(exports: list[ExportConfig], every: float | None) -> float:
    """--follow repeats change capture: each run reads only what is new. Other modes would re-export.

    The seconds between runs: ``every``, else the shortest ``cdc.commit_every_s`` of the exports.
    """
    from rivet.errors import ConfigError

    others = [e.name for e in exports if e.mode != "cdc"]
    if others:
        raise ConfigError(
            f"--follow runs mode: cdc exports only; {', '.join(others)} would be exported again each time"
        )
    if every is not None:
        return every
    configured = [e.cdc.commit_every_s for e in exports if e.cdc is not None and e.cdc.commit_every_s is not None]
    return min(configured, default=FOLLOW_EVERY_S)


def _rest(seconds: float) -> bool:
    """Wait before the next --follow run; False when stopped meanwhile (Ctrl-C, SIGTERM)."""
    import time

    try:
        # Said inside the guard: a stop from the moment it shows is a stop between runs.
        say(f"next run in {seconds:g} s; stopping now loses nothing")
        time.sleep(seconds)
    except KeyboardInterrupt:
        say("stopped between runs: everything read so far is published")
        return False
    return True


def _report(result: RunResult, *, parallel: bool, events: bool) -> None:
    """The run's summary and failures, for people (not with --events)."""
    if events:
        return
    if parallel:
        from rivet.ui.cards import Cards

        say(Cards([]).summary(result.exports, result.duration_s))
    failed_exports(result.exports)


def _write_metrics(loaded: LoadedConfig, path: Path) -> None:
    """--metrics-file: the exports' metrics after a run; a failure to write it is said, and the run's outcome stands."""
    from rivet.app.prometheus import write_metrics_file

    try:
        write_metrics_file(loaded, path)
    except Exception as e:  # noqa: BLE001 - the exports ran; only their metrics are missing
        logging.getLogger("rivet").warning("writing the metrics to %s failed: %s", path, e)


def run_command(
    config: ConfigOption,
    export: ExportOption = None,
    json_output: JsonOption = False,
    param: ParamOption = None,
    resume: ResumeOption = False,
    wait: WaitOption = False,
    validate: ValidateOption = False,
    reconcile: ReconcileOption = False,
    parallel_exports: ThreadsOption = False,
    parallel_export_processes: ProcessesOption = False,
    max_processes: MaxOption = None,
    summary_output: SummaryOption = None,
    events: EventsOption = False,
    dask_scheduler: DaskOption = None,
    follow: FollowOption = False,
    every: EveryOption = None,
    metrics_file: MetricsFileOption = None,
) -> None:
    """Run the exports of a config (all, or those named with -e).

    With --follow (change capture exports only), the run starts again every --every
    seconds until it is stopped; each run publishes and commits on its own, so a stop
    at any moment loses and repeats nothing. Stopped between runs it exits 0.

    Exit codes: 0 all succeeded, 1 an export failed (or is already running), 2 bad
    config or usage, 3 a value or column type cannot be exported exactly, or rows
    were lost (counts, --validate or --reconcile disagree), 4 the columns changed
    and on_schema_drift: fail stopped the export, 130 interrupted.
    """
    import signal
    import sys

    from rivet.app.runner import run_config
    from rivet.cli._output import setup_logging
    from rivet.config import load_config
    from rivet.core.events import StreamObserver
    from rivet.execution.options import RunOptions
    from rivet.ui import progress

    if parallel_exports and parallel_export_processes:
        raise typer.BadParameter("choose --parallel-exports or --parallel-export-processes, not both")
    if follow and (json_output or summary_output is not None):
        raise typer.BadParameter("--follow runs until stopped: follow it with --events, not --json or --summary-output")
    setup_logging()
    signal.signal(signal.SIGTERM, _on_sigterm)
    if json_output or events:
        progress.ENABLED = False
    observer = StreamObserver(sys.stdout) if events else None
    to_stdout = False
    cluster = None
    try:
        loaded = load_config(config, parse_params(param))
        if dask_scheduler:
            from rivet.execution.cluster import Cluster

            cluster = Cluster.connect(dask_scheduler)
        threads = parallel_exports or loaded.config.parallel_exports
        processes = parallel_export_processes or loaded.config.parallel_export_processes
        parallel = "processes" if processes and not parallel_exports else "threads" if threads else None
        selected = [e for e in loaded.config.exports if not export or e.name in export]
        to_stdout = stdout_exports(selected, events=events, processes=parallel == "processes", validate=validate)
        if follow:
            every = _check_follow(selected, every)
        while True:
            result = run_config(
                loaded,
                export,
                options=RunOptions(resume=resume, wait=wait, validate=validate, reconcile=reconcile, cluster=cluster),
                parallel=parallel,
                max_parallel=max_processes,
                params=parse_params(param),
                observer=observer,
                notify=not events,
                show_progress=not events,
            )
            if metrics_file is not None:
                _write_metrics(loaded, metrics_file)
            if not follow or result.exit_code:
                break
            _report(result, parallel=parallel is not None, events=events)
            if not _rest(every or 0.0):
                raise typer.Exit(0)
    except (Exception, KeyboardInterrupt) as e:
        if isinstance(e, typer.BadParameter | typer.Exit):
            raise
        raise typer.Exit(report_error(e)) from None
    finally:
        if cluster is not None:
            cluster.close()
    _report(result, parallel=parallel is not None, events=events)
    if summary_output is not None:
        summary_output.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    if json_output:
        # Standard output carries an export's file: the summary goes to stderr.
        emit_json(result.to_dict(), stream=sys.stderr if to_stdout else sys.stdout)
    raise typer.Exit(result.exit_code)
