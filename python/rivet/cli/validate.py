"""``rivet validate``: check what an export published against its manifest, without the source."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rivet.cli._output import emit_json, report, report_error
from rivet.cli.run import parse_params
from rivet.errors import EXIT_DATA, EXIT_OK

if TYPE_CHECKING:
    from rivet.config import ExportConfig
    from rivet.output.validate import TableLog
    from rivet.storage.destinations import Destination


class Depth(str, enum.Enum):
    """How far rivet validate looks."""

    FULL = "full"
    LIGHT = "light"


def validate_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The rivet.yaml whose output to check.")],
    export: Annotated[list[str] | None, typer.Option("--export", "-e", help="Only this export (repeatable).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE for ${KEY} (repeatable).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the findings as JSON on stdout.")] = False,
    depth: Annotated[
        Depth,
        typer.Option(
            "--depth",
            help="full (default): read every part (SHA-256, rows); light: the manifest, _SUCCESS and each part's "
            "size only, for a scheduler that polls.",
        ),
    ] = Depth.FULL,
) -> None:
    """Check each export's destination: manifest, _SUCCESS, every part (size, SHA-256, rows), no strays.

    The destination is where the export last published (from the state store), else
    where its config points today. An export that never published (it never ran, or
    skip_empty skipped its runs) is reported as such. Exit codes: 0 every published
    destination is complete and exact, 2 bad config, 3 a mismatch was found.
    """
    try:
        findings = _validate(config, export, parse_params(param), deep=depth is Depth.FULL)
    except Exception as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    if json_output:
        emit_json({"exports": findings})
    else:
        for f in findings:
            if f["problems"]:
                report(f"✗ {f['export']}: {f['destination']}")
                for problem in f["problems"]:
                    report(f"    {problem}")
            elif not f["published"]:
                report(f"– {f['export']}: {f['note']} (at {f['destination']})")
            else:
                report(f"✓ {f['export']}: {f['parts']} part(s), {f['rows']:,} rows at {f['destination']}")
    raise typer.Exit(EXIT_DATA if any(f["problems"] for f in findings) else EXIT_OK)


def _validate(config: Path, names: list[str] | None, params: dict[str, str], *, deep: bool) -> list[dict[str, Any]]:
    from rivet.cli.state import key_of
    from rivet.config import load_config
    from rivet.config.layout import destination_urls
    from rivet.core.redact import redact_url
    from rivet.core.runinfo import utc_now
    from rivet.errors import StateError
    from rivet.output.validate import validate_destination
    from rivet.plan.export import export_destination, table_export_name
    from rivet.state import StateStore, state_location
    from rivet.state.keys import written_to
    from rivet.storage.destinations import Destination

    loaded = load_config(config, params)
    exports = [loaded.export(n) for n in names] if names else list(loaded.config.exports)
    state = StateStore(state_location(loaded.base_dir))
    findings = []
    try:
        for e in exports:
            if e.writes_to_stdout:
                continue  # nothing stays behind to check
            spec = export_destination(loaded, e, utc_now())
            last = state.last_success(key_of(loaded, state, e.name))
            if last is not None and last["destination"]:
                # Where the last run published, if it is a folder this export's destination renders to.
                if not written_to(str(last["destination"]), destination_urls(loaded)[e.name]):
                    raise StateError(
                        f"export '{e.name}': its last run published to {redact_url(str(last['destination']))} says "
                        "the state store, which is not this export's destination; the store is not trusted with "
                        "paths (was it edited?)"
                    )
                spec = dataclasses.replace(spec, url=last["destination"])
            destination = Destination(spec)
            key = key_of(loaded, state, e.name)
            if e.tables and last is not None:
                # Each table of one change stream is published in its own folder.
                for table in e.tables:
                    name, table_spec = table_export_name(e.name, table), spec.child(table)
                    problems, totals = validate_destination(Destination(table_spec), name, None, deep=deep)
                    findings.append(
                        {"export": name, "destination": table_spec.shown, "problems": problems, "published": True,
                         **totals}
                    )  # fmt: skip
                    findings.extend(_snapshot_findings(name, table_spec, deep))
                continue
            if last is None and destination.read_file(spec.manifest_name) is None:
                # Nothing was ever published here, and the state says so: a fact, not a broken output.
                runs = state.runs([key], limit=1)
                why = f"its last run ({runs[0]['run_id']}) was {runs[0]['status']}" if runs else "it never ran"
                findings.append({"export": e.name, "destination": spec.shown, "problems": [], "published": False,
                                 "note": f"nothing published: {why}", "parts": 0, "rows": 0})  # fmt: skip
                continue
            problems, totals = validate_destination(
                destination, e.name, table_log(e, destination, loaded.base_dir), deep=deep
            )
            findings.append(
                {"export": e.name, "destination": spec.shown, "problems": problems, "published": True, **totals}
            )
            if e.mode == "cdc":
                findings.extend(_snapshot_findings(e.name, spec, deep))
    finally:
        state.close()
    return findings


def _snapshot_findings(export: str, spec: Any, deep: bool) -> list[dict[str, Any]]:
    """A change-capture export's initial snapshot, checked like its changes (nothing when it has none)."""
    from rivet.execution.changes import SNAPSHOT_FOLDER
    from rivet.output.validate import validate_destination
    from rivet.storage.destinations import Destination

    snapshot = spec.child(SNAPSHOT_FOLDER)
    destination = Destination(snapshot)
    if destination.read_file(snapshot.manifest_name) is None and destination.read_file(snapshot.success_name) is None:
        return []
    problems, totals = validate_destination(destination, export, None, deep=deep)
    return [{"export": f"{export} (snapshot)", "destination": snapshot.shown, "problems": problems, "published": True,
             **totals}]  # fmt: skip


def table_log(export: ExportConfig, destination: Destination, base_dir: Path) -> TableLog | None:
    """What ``rivet validate`` compares the manifest with, for a table format."""
    from rivet.output.tables import TABLE_FORMATS, table_format
    from rivet.output.tables.iceberg import IcebergTable
    from rivet.output.validate import TableLog

    if export.format in TABLE_FORMATS:
        fmt = table_format(export.format, IcebergTable.from_config(export.iceberg, export.name, base_dir))
        return TableLog(fmt, destination)
    return None
