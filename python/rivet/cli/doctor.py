"""``rivet doctor``: check the source, every export, its destination and the state, without exporting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rivet.cli._output import emit_json, report, report_error
from rivet.cli.run import parse_params


def doctor_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The rivet.yaml to check.")],
    export: Annotated[list[str] | None, typer.Option("--export", "-e", help="Only this export (repeatable).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE for ${KEY} (repeatable).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
    dask_scheduler: Annotated[
        str | None, typer.Option("--dask-scheduler", metavar="ADDRESS", help="Also check this Dask cluster.")
    ] = None,
) -> None:
    """Check that every export can run, without exporting anything.

    The source: DNS, TCP, login and TLS. Each export: its query's privileges and the columns
    its mode names. Each destination: a probe file written, read back and removed. The state.
    A Dask cluster (--dask-scheduler, or the config's executor): its workers and their rivet.
    One line per check (✓ fine, ! a warning, ✗ a failure and its fix).
    Exit codes: 0 no check failed, 1 a check failed, 2 the config cannot be read.
    """
    from rivet.app.doctor import FAIL, as_dicts, diagnose, render
    from rivet.config import load_config
    from rivet.sources import network

    network.WARN_ABOUT_CHANNEL = False  # the channel is one of the checks
    try:
        loaded = load_config(config, parse_params(param))
        checks = diagnose(loaded, export, dask_scheduler)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    failed = any(c.status == FAIL for c in checks)
    if json_output:
        emit_json({"config": str(config), "ok": not failed, "checks": list(as_dicts(checks))})
    else:
        render(checks, report)
        report(f"{'✗ some checks failed' if failed else '✓ ready'}: {len(checks)} checks")
    if failed:
        raise typer.Exit(1)
