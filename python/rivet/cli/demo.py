"""``rivet demo``: export a bundled SQLite sample, no database server needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rivet.cli._output import emit_json, report_error, say


def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the demo database and files.")] = Path(
        "output"
    ),
    json_output: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")] = False,
) -> None:
    """Create a small SQLite database and export it to Parquet and CSV under ./output."""
    from rivet.app.demo import prepare_demo
    from rivet.app.runner import run_config
    from rivet.config import load_config

    try:
        config = prepare_demo(output)
        say(f"demo database and config written to {config.parent}/")
        result = run_config(load_config(config), show_progress=True)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    if json_output:
        emit_json(result.to_dict())
    elif result.ok:
        say(f"\nfiles are under {config.parent / 'exports'}/ (each folder has a manifest.json and _SUCCESS)")
        say(f"run it again:  rivet run -c {config}")
    raise typer.Exit(result.exit_code)
