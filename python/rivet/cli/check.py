"""``rivet check``: connect, describe each export's query, and report how every column will be read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rivet.cli._output import emit_json, report_error, say
from rivet.cli.run import parse_params
from rivet.errors import EXIT_DATA

# --strict fails with this code when a column is not exact (or is refused).
EXIT_NOT_EXACT = 1


def check_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The rivet.yaml to check.")],
    export: Annotated[list[str] | None, typer.Option("--export", "-e", help="Only this export (repeatable).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE for ${KEY} (repeatable).")] = None,
    type_report: Annotated[
        bool, typer.Option("--type-report", help="Per column: source type, Arrow type, fidelity, reader.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 unless every column is exact (implies --type-report).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the type report as JSON.")] = False,
    config_only: Annotated[
        bool, typer.Option("--config-only", help="Only validate the file: no connection, no environment needed.")
    ] = False,
) -> None:
    """Check each export without reading its rows: every column type maps, and what a run will cost.

    The preflight of each export comes from the optimizer (EXPLAIN of the query and of one chunk):
    estimated rows and bytes, whether chunks reach their rows through an index, the longest
    statement expected, recommended parallel and profile, a pooler in the way; verdict ok, slow,
    scan-heavy or unsafe. With --config-only the file is validated offline (for CI): keys, values, modes,
    destinations; unset ${VAR} are reported, not failed.

    Exit codes: 0 fine, 1 a column is not exact (with --strict), 2 bad config,
    3 a column type cannot be exported (refused).
    """
    from rivet.config import load_config
    from rivet.planning.export import build_plan
    from rivet.preflight import preflight
    from rivet.sources.network import WEAK_CHANNELS, NetworkSource
    from rivet.typereport import type_report as report_of

    if config_only:
        _check_config_only(config, parse_params(param), json_output)
        return
    try:
        loaded = load_config(config, parse_params(param))
        names = export or [e.name for e in loaded.config.exports]
        plans = [build_plan(loaded, loaded.export(name)) for name in names]
        reports = [report_of(plan) for plan in plans]
        weighed = [] if (type_report or strict) and not json_output else [preflight(plan) for plan in plans]
        channel = plans[0].source.channel() if plans and isinstance(plans[0].source, NetworkSource) else None
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    if channel is not None:
        say(f"connection: {channel}" + (f" ({WEAK_CHANNELS[channel]})" if channel in WEAK_CHANNELS else ""))
    if json_output:
        exports = [
            {**r.to_dict(), "verdict": p.verdict, "preflight": p.to_dict()}
            for r, p in zip(reports, weighed, strict=True)
        ]
        emit_json({"exports": exports, "exact": all(r.exact for r in reports), "channel": channel})
    elif type_report or strict:
        print("\n\n".join(r.render() for r in reports), flush=True)
    else:
        for r, p in zip(reports, weighed, strict=True):
            inexact = [c for c in r.columns if c.fidelity != "exact"]
            refused = [c.column for c in r.columns if c.fidelity == "refused"]
            detail = f", {len(inexact)} not exact (see --type-report)" if inexact else ", all exact"
            mark = f"✗ refused: {', '.join(refused)};" if refused else "✓"
            say(f"{mark} {r.export}: {len(r.columns)} columns{detail}; {r.engine} reader")
            say(f"  preflight: {p.line()}")
    if any(c.fidelity == "refused" for r in reports for c in r.columns):
        say("some columns cannot be exported: cast them in the query or set columns: overrides")
        raise typer.Exit(EXIT_DATA)
    if strict and not all(r.exact for r in reports):
        say("--strict: some columns are not exact")
        raise typer.Exit(EXIT_NOT_EXACT)


def _check_config_only(config: Path, params: dict[str, str], json_output: bool) -> None:
    """Validate ``config`` without connecting; exit 2 with the messages when it is invalid."""
    from rivet.config import load_config

    try:
        loaded = load_config(config, params, offline=True)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        if json_output:
            from rivet.redact import redact_text

            emit_json({"config": str(config), "valid": False, "error": redact_text(str(e))})
        raise typer.Exit(report_error(e)) from None
    names = [e.name for e in loaded.config.exports]
    if json_output:
        emit_json({"config": str(config), "valid": True, "exports": names, "unset_variables": list(loaded.unset)})
        return
    say(f"✓ {config}: valid, {len(names)} export(s): {', '.join(names)}")
    if loaded.unset:
        say(f"  not set here, checked as written: {', '.join('${' + n + '}' for n in loaded.unset)}")
