"""``rivet run``: run the exports of a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rivet.cli._output import emit_json, report_error, say

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


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` items as a dict (the last of duplicates wins)."""
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got '{item}'", param_hint="--param")
        params[key] = value
    return params


def run_command(
    config: ConfigOption,
    export: ExportOption = None,
    json_output: JsonOption = False,
    param: ParamOption = None,
    resume: ResumeOption = False,
) -> None:
    """Run the exports of a config (all, or those named with -e).

    Exit codes: 0 all succeeded, 1 an export failed, 2 bad config or usage,
    3 a value or column type cannot be exported exactly, 130 interrupted.
    """
    from rivet import progress
    from rivet.cli._output import setup_logging
    from rivet.config import load_config
    from rivet.runner import run_config

    setup_logging()
    if json_output:
        progress.ENABLED = False
    try:
        loaded = load_config(config, parse_params(param))
        result = run_config(loaded, export, resume=resume, on_result=lambda r: say(r.summary()))
    except (Exception, KeyboardInterrupt) as e:
        if isinstance(e, typer.BadParameter):
            raise
        raise typer.Exit(report_error(e)) from None
    if json_output:
        emit_json(result.to_dict())
    raise typer.Exit(result.exit_code)
