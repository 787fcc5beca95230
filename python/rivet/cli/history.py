"""``rivet metrics`` and ``rivet journal``: what earlier runs did, from the state store."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rivet.cli._output import emit_json, say
from rivet.cli.state import key_of, state_of

if TYPE_CHECKING:
    pass

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The rivet.yaml whose state to read.")]
LastOption = Annotated[int, typer.Option("--last", "-n", min=1, help="How many runs, newest first.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


class MetricsFormat(str, enum.Enum):
    """How rivet metrics prints."""

    TABLE = "table"
    JSON = "json"
    PROMETHEUS = "prometheus"


# The columns of a run that metrics shows, in order.
RUN_FIELDS = (
    "run_id",
    "export_name",
    "mode",
    "status",
    "started_at",
    "finished_at",
    "rows",
    "files",
    "bytes",
    "duration_ms",
    "peak_rss_mb",
    "engine",
    "error",
)


def metrics_command(
    config: ConfigOption,
    export: Annotated[str | None, typer.Option("--export", "-e", help="Only this export.")] = None,
    last: LastOption = 20,
    json_output: JsonOption = False,
    output_format: Annotated[
        MetricsFormat,
        typer.Option(
            "--format",
            help="table (default); json (as --json); prometheus: the text exposition format, for a scraper.",
        ),
    ] = MetricsFormat.TABLE,
) -> None:
    """Recent runs (status, rows, files, bytes, time, memory), and how far behind each change capture is."""
    from rivet.app.lag import cdc_lag

    with state_of(config) as (loaded, store):
        names = [export] if export is not None else [e.name for e in loaded.config.exports]
        keys = [key_of(loaded, store, name) for name in names]
        if output_format is MetricsFormat.PROMETHEUS:
            from rivet.app.prometheus import exposition

            typer.echo(exposition(loaded, store, names, keys), nl=False)
            return
        runs = [{k: r.get(k) for k in RUN_FIELDS} for r in store.runs(keys, limit=last)]
        lags = [
            cdc_lag(name, store, key)
            for name, key in zip(names, keys, strict=True)
            if loaded.export(name).mode == "cdc"
        ]
    if json_output or output_format is MetricsFormat.JSON:
        emit_json({"runs": runs, "changes": lags})
        return
    if not runs:
        say("no runs recorded")
    for r in runs:
        seconds = f"{(r['duration_ms'] or 0) / 1000:.2f} s"
        error = f"  {r['error']}" if r["error"] else ""
        typer.echo(
            f"{r['started_at']}  {r['export_name']:<20} {r['status']:<11} {r['rows']:>12,} rows "
            f"{r['files']:>4} files {r['bytes']:>14,} B {seconds:>10} {r['peak_rss_mb'] or 0:>7.0f} MB{error}"
        )
    for lag in lags:
        typer.echo(_show_lag(lag))


def _show_lag(lag: dict[str, Any]) -> str:
    if lag["seconds_behind"] is None:
        return f"{lag['export_name']:<20} change capture: no published run yet"
    behind = lag["bytes_behind_at_start"]
    start = f"; its last run started {behind:,} B behind the log" if behind is not None else ""
    return (
        f"{lag['export_name']:<20} change capture at {lag['position']}: current as of {lag['current_as_of']} "
        f"({lag['seconds_behind']:,.0f} s ago){start}"
    )


def journal_command(
    config: ConfigOption,
    export: Annotated[str, typer.Option("--export", "-e", help="The export.")],
    last: LastOption = 1,
    run_id: Annotated[str | None, typer.Option("--run-id", help="This run (default: the newest).")] = None,
    json_output: JsonOption = False,
) -> None:
    """The events of an export's recent runs (or of one run): what happened, in order."""
    with state_of(config) as (loaded, store):
        journals = store.journals(key_of(loaded, store, export), run_id=run_id, limit=last)
    if run_id is not None and not journals:
        say(f"no journal for run {run_id} of {export}")
        raise typer.Exit(1)
    if json_output:
        emit_json({"runs": journals})
        return
    for journal in journals:
        typer.echo(f"run {journal['run_id']} ({journal['finished_at']})")
        for event in journal["events"]:
            fields = {k: v for k, v in event.items() if k not in ("v", "type", "export", "ts")}
            typer.echo(f"  {event['ts']}  {event['type']:<14} {json.dumps(fields, default=str)}")
