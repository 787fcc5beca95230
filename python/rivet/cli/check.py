"""``rivet check``: connect, describe each export's query, and report how every column will be read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rivet.cli._output import emit_json, json_error, report, report_error, say
from rivet.cli.run import parse_params
from rivet.core.redact import redact_text
from rivet.errors import EXIT_DATA, EXIT_FAILED, EXIT_OK, EXIT_STALE_WARN, exit_code_for, hint_for

if TYPE_CHECKING:
    from rivet.app.preflight import Preflight
    from rivet.app.typereport import ExportTypeReport
    from rivet.config import LoadedConfig
    from rivet.plan.export import ExportPlan

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
    freshness: Annotated[
        bool,
        typer.Option(
            "--freshness", help="Only say whether each export's last published run is within its freshness limits."
        ),
    ] = False,
) -> None:
    """Check each export without reading its rows: every column type maps, and what a run will cost.

    The preflight of each export comes from the optimizer (EXPLAIN of the query and of one chunk):
    estimated rows and bytes, whether chunks reach their rows through an index, the longest
    statement expected, recommended parallel and profile, a pooler in the way; verdict ok, slow,
    scan-heavy or unsafe. With --config-only the file is validated offline (for CI): keys, values, modes,
    destinations; unset ${VAR} are reported, not failed.

    With --freshness, only the state store is read: each export with freshness limits
    (its own ``freshness:``, else ``defaults.freshness``) is fresh, or stale past warn_after
    or error_after since its last published run started (never published counts as stale).

    Exit codes: 0 fine, 1 a column is not exact (with --strict), 2 bad config,
    3 a column type cannot be exported (refused). With --freshness: 0 every export is
    fresh, 1 one is past its error_after, 5 one is past its warn_after (none past error_after).
    """
    from rivet.config import load_config

    if freshness:
        _check_freshness(config, export, json_output)
        return
    if config_only:
        _check_config_only(config, parse_params(param), json_output)
        return
    try:
        loaded = load_config(config, parse_params(param))
        names = [loaded.export(name).name for name in export] if export else [e.name for e in loaded.config.exports]
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    from rivet.sources import network

    network.WARN_ABOUT_CHANNEL = False  # the channel is reported below, once
    weigh = json_output or not (type_report or strict)
    checked = [c for name in names for c in _check_export(loaded, name, weigh=weigh)]  # one failing stops none
    channel = next((c.channel for c in checked if c.channel), None)
    if channel is not None:
        from rivet.sources.network import WEAK_CHANNELS

        say(f"connection: {channel}" + (f" ({WEAK_CHANNELS[channel]})" if channel in WEAK_CHANNELS else ""))
    if json_output:
        emit_json(
            {
                "exports": [c.to_dict() for c in checked],
                "exact": all(c.report is not None and c.report.exact for c in checked),
                "channel": channel,
            }
        )
    else:
        blocks = [c.block(tables=type_report or strict) for c in checked]
        report(("\n\n" if type_report or strict else "\n").join(blocks))
    for c in checked:
        c.json_error_line()
    code = max((c.exit_code for c in checked), default=0)
    if any(c.refused for c in checked):
        say("some columns cannot be exported: cast them in the query or set columns: overrides")
    if strict and code == 0 and not all(c.report is not None and c.report.exact for c in checked):
        say("--strict: some columns are not exact")
        code = EXIT_NOT_EXACT
    if code:
        raise typer.Exit(code)


@dataclass
class Checked:
    """One export's check: its type report and preflight, or the error that stops it."""

    name: str
    report: ExportTypeReport | None = None
    preflight: Preflight | None = None
    channel: str | None = None
    error: str | None = None
    error_type: str | None = None
    exit_code: int = 0

    @property
    def refused(self) -> list[str]:
        """The columns the export cannot write."""
        return [c.column for c in self.report.columns if c.fidelity == "refused"] if self.report else []

    def json_error_line(self) -> None:
        """With ``--json-errors``, this export's error or refused columns as one JSON line on stderr."""
        if self.error is not None:
            json_error(self.exit_code, self.error_type, self.error, self.name)
        elif self.refused:
            message = f"column(s) that cannot be exported exactly: {', '.join(self.refused)}"
            json_error(self.exit_code, "UnsupportedTypeError", message, self.name)

    def block(self, *, tables: bool) -> str:
        """What a terminal shows of this export: its error, its type table, or its line."""
        if self.error is not None:
            return f"✗ {self.name}: {self.error}"
        assert self.report is not None
        return self.report.render() if tables else self.line()

    def line(self) -> str:
        """One line (and its preflight) for a terminal."""
        assert self.report is not None
        inexact = [c for c in self.report.columns if c.fidelity != "exact"]
        detail = f", {len(inexact)} not exact (see --type-report)" if inexact else ", all exact"
        mark = f"✗ refused: {', '.join(self.refused)};" if self.refused else "✓"
        text = f"{mark} {self.name}: {len(self.report.columns)} columns{detail}; {self.report.engine} reader"
        return text + (f"\n  preflight: {self.preflight.line()}" if self.preflight else "")

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``: the report and verdict, or the error with its code and hint."""
        if self.error is not None:
            return {
                "export": self.name,
                "verdict": "error",
                "error": self.error,
                "error_type": self.error_type,
                "exit_code": self.exit_code,
                "hint": hint_for(self.error_type),
            }
        assert self.report is not None
        weighed = {"verdict": self.preflight.verdict, "preflight": self.preflight.to_dict()} if self.preflight else {}
        return {**self.report.to_dict(), **weighed, "exit_code": self.exit_code}


def _check_freshness(config: Path, export: list[str] | None, json_output: bool) -> None:
    """--freshness: each export's verdict, and the exit code of the worst."""
    from rivet.app.freshness import ERROR, FRESH, UNSET, WARN, check_freshness
    from rivet.cli.state import key_of, state_of

    with state_of(config) as (loaded, store):
        names = export or [e.name for e in loaded.config.exports]
        verdicts = check_freshness(loaded, store, [(name, key_of(loaded, store, name)) for name in names])
    statuses = {v.status for v in verdicts}
    code = EXIT_FAILED if ERROR in statuses else EXIT_STALE_WARN if WARN in statuses else EXIT_OK
    if json_output:
        emit_json({"exports": [v.to_dict() for v in verdicts], "stale": code != EXIT_OK})
    else:
        marks = {FRESH: "✓", WARN: "!", ERROR: "✗", UNSET: "·"}
        for v in verdicts:
            say(f"{marks[v.status]} {v.sentence()}")
    raise typer.Exit(code)


def _check_export(loaded: LoadedConfig, name: str, *, weigh: bool) -> list[Checked]:
    """One export checked; each of its tables, for a ``tables:`` export."""
    from rivet.plan.export import build_plan

    try:
        plan = build_plan(loaded, loaded.export(name))
    except Exception as e:  # noqa: BLE001 - this export's outcome; the others are still checked
        return [_failed(Checked(name), e)]
    return [_check_plan(p, weigh=weigh) for p in plan.table_plans() or [plan]]


def _failed(checked: Checked, error: Exception) -> Checked:
    checked.report = None
    checked.error = redact_text(str(error) or type(error).__name__)
    checked.error_type = type(error).__name__
    checked.exit_code = exit_code_for(error)
    return checked


def _check_plan(plan: ExportPlan, *, weigh: bool) -> Checked:
    """Describe and weigh one export (or table of one); whatever fails is its result."""
    from rivet.app.preflight import preflight
    from rivet.app.typereport import type_report as report_of
    from rivet.plan.checks import output_schema
    from rivet.sources.network import NetworkSource

    checked = Checked(plan.name)
    try:
        if isinstance(plan.source, NetworkSource):
            checked.channel = plan.source.channel()
        checked.report = report_of(plan)
        if checked.refused:
            checked.exit_code = EXIT_DATA
        elif checked.report.schema is not None:
            output_schema(plan, checked.report.schema)  # what the run refuses of these columns
        if weigh:
            checked.preflight = preflight(plan)
    except Exception as e:  # noqa: BLE001 - this export's outcome; the others are still checked
        return _failed(checked, e)
    return checked


def _check_config_only(config: Path, params: dict[str, str], json_output: bool) -> None:
    """Validate ``config`` without connecting: every export's problem a run would refuse; exit 2 if any."""
    from rivet.config import load_config
    from rivet.plan.checks import export_problems

    try:
        loaded = load_config(config, params, offline=True)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        if json_output:
            emit_json({"config": str(config), "valid": False, "error": redact_text(str(e))})
        raise typer.Exit(report_error(e)) from None
    exports = loaded.config.exports
    names = [e.name for e in exports]
    problems = {e.name: [redact_text(p) for p in export_problems(loaded, e, offline=True)] for e in exports}
    valid = not any(problems.values())
    url_env = loaded.config.source.url_env
    unread = url_env is not None and not loaded.variables.get(url_env)
    if json_output:
        emit_json(
            {
                "config": str(config),
                "valid": valid,
                "exports": names,
                "problems": {name: found for name, found in problems.items() if found},
                "unset_variables": list(loaded.unset),
            }
        )
    else:
        for name, found in problems.items():
            for problem in found:
                report(f"✗ {name}: {problem}")
        if valid:
            report(f"✓ {config}: valid, {len(names)} export(s): {', '.join(names)}")
        if loaded.unset:
            say(f"  not set here, checked as written: {', '.join('${' + n + '}' for n in loaded.unset)}")
        if unread:
            say(f"  the source URL ({url_env}) is not set here: its scheme and parameters are checked where it is")
    if not valid:
        raise typer.Exit(2)
