"""``rivet plan`` and ``rivet apply``: seal the exports into a JSON plan, then run exactly it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rivet.cli._output import emit_json, failed_exports, report_error, say

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The rivet.yaml to plan.")]
ExportOption = Annotated[list[str] | None, typer.Option("--export", "-e", help="Only this export (repeatable).")]


def plan_command(
    config: ConfigOption,
    export: ExportOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the plan here (default: stdout).")
    ] = None,
) -> None:
    """Resolve the exports into a sealed JSON plan: queries, chunks, cursors, waves (no credentials)."""
    from rivet.app.planfiles import make_plan
    from rivet.config import load_config

    try:
        document = make_plan(load_config(config), export)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    for warning in document["warnings"]:
        say(f"warning: {warning}")
    if output is None:
        emit_json(document)
        return
    output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    for entry in document["exports"]:
        chunks = f", {len(entry['chunks'])} chunks" if entry["chunks"] is not None else ""
        rows = f", ~{entry['row_estimate']:,} rows" if entry["row_estimate"] is not None else ""
        say(f"wave {entry['wave']}: {entry['export']} ({entry['strategy']}{chunks}{rows})")
    say(f"plan written to {output}; run it with `rivet apply {output}` before {document['expires_at']}")


def apply_command(
    plan: Annotated[Path | None, typer.Argument(help="A plan written by `rivet plan`.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Plan this config now and apply it.")] = None,
    export: ExportOption = None,
    processes: Annotated[
        bool, typer.Option("--parallel-export-processes", help="Run the exports of a wave in parallel processes.")
    ] = False,
    max_processes: Annotated[
        int | None, typer.Option("--max-processes", min=1, help="At most this many child processes.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Run a plan past its expiry.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
    events: Annotated[bool, typer.Option("--events", hidden=True)] = False,
) -> None:
    """Run a sealed plan wave by wave (or plan a config now with -c and run it)."""
    import sys
    import tempfile
    import time

    from rivet.app.planfiles import apply_plan, load_plan, make_plan
    from rivet.cli._output import setup_logging
    from rivet.cli.run import stdout_exports
    from rivet.config import load_config
    from rivet.core.events import StreamObserver
    from rivet.core.runinfo import iso, utc_now
    from rivet.execution.results import RunResult
    from rivet.ui import progress

    if (plan is None) == (config is None):
        raise typer.BadParameter("give a plan file, or --config to plan and apply at once")
    setup_logging()
    if json_output or events:
        progress.ENABLED = False
    started, clock = utc_now(), time.perf_counter()
    try:
        if plan is None:
            assert config is not None
            document = make_plan(load_config(config), export)
            handle = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="rivet-plan-", delete=False)
            with handle:
                json.dump(document, handle)
            plan = Path(handle.name)
        sealed = load_plan(plan, force=force, names=export)
        to_stdout = stdout_exports(
            [sealed.loaded.export(name) for name in sealed.plans], events=events, processes=processes
        )
        observer = StreamObserver(sys.stdout) if events else None
        results = apply_plan(
            sealed, plan, processes=processes, max_processes=max_processes, force=force, observer=observer
        )
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    run = RunResult(
        results,
        time.perf_counter() - clock,
        sealed.document["config"],
        parallel_mode="processes" if processes else "sequential",
        started_at=iso(started),
    )
    if not events:
        from rivet.app.notify import send_notifications
        from rivet.ui.cards import Cards

        say(Cards([]).summary(results, run.duration_s))
        send_notifications(sealed.loaded.config.notifications, results)
        failed_exports(results)
    if json_output:
        # Standard output carries an export's file: the summary goes to stderr.
        emit_json(run.to_dict(), stream=sys.stderr if to_stdout else sys.stdout)
    raise typer.Exit(run.exit_code)
