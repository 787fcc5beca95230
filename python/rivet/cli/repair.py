"""``rivet repair``: read again the chunks a reconcile found different, and republish the run's output."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rivet.cli._output import emit_json, report_error, say

if TYPE_CHECKING:
    from rivet.state.rows import ChunkTask


def repair_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The rivet.yaml of the export.")],
    export: Annotated[str, typer.Option("--export", "-e", help="The chunked export to repair.")],
    report: Annotated[
        Path | None,
        typer.Option("--report", help="A report saved by `rivet reconcile -o` (default: reconcile now)."),
    ] = None,
    execute: Annotated[
        bool, typer.Option("--execute", help="Repair; without it, only say what would be done.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Read again the chunks of the export's last checkpointed run that differ from the source, and republish.

    Every chunk of a part holding a flagged chunk is read again into new parts, which replace the old
    ones in the manifest; the old parts are removed. A dry run unless --execute.
    Exit codes: 0 repaired, nothing to repair, or a dry run; 1 the repair failed; 2 bad config.
    """
    try:
        outcome = repair(config, export, report, execute=execute)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    if json_output:
        emit_json(outcome)
        return
    _show(outcome)


def repair(config: Path, export: str, report_file: Path | None, *, execute: bool) -> dict[str, Any]:
    """What a repair of ``export`` reads again; with ``execute``, the repair done."""
    from rivet.app.repair import execute_repair, plan_repair, published_manifest
    from rivet.cli.reconcile import checked_chunk_run, count_chunks
    from rivet.cli.state import key_of, open_state
    from rivet.core.runinfo import iso, utc_now
    from rivet.errors import ConfigError
    from rivet.execution.checkpoints import run_location
    from rivet.plan.export import build_plan
    from rivet.state.lease import ExportLease
    from rivet.storage.destinations import open_destination

    loaded, store = open_state(config)
    try:
        # State no run has claimed yet (kept before namespaces) is the export's too.
        plan = dataclasses.replace(build_plan(loaded, loaded.export(export)), state_key=key_of(loaded, store, export))
        if plan.appends:
            raise ConfigError(
                f"export '{export}' adds each run's parts to those before (keyset_incremental); rivet repair "
                "republishes the last run's parts alone and would drop the others. Check it with rivet reconcile, "
                f"and read it again with `rivet state reset -c {config} -e {export}` and a run"
            )
        run = checked_chunk_run(store, plan)
        if run.status != "completed":
            raise ConfigError(
                f"run {run.run_id} of export '{export}' is unfinished: complete it with "
                f"`{plan.command('run --resume')}` first"
            )
        with ExportLease(store, plan.key, f"repair-{run.run_id}") as lease:
            tasks = store.chunk_tasks(run.run_id)
            if report_file is not None:
                partitions = _saved_partitions(report_file, export, run.run_id, tasks)
            else:
                partitions = count_chunks(plan, run, tasks)["partitions"]
            # Where the run wrote, as the state says it and only where the export could have written.
            destination = open_destination(run_location(plan, run)[0])
            manifest = published_manifest(destination, run)
            repair_plan = plan_repair(export, run.run_id, partitions, tasks, manifest, destination)
            outcome: dict[str, Any] = {**repair_plan.to_dict(), "executed": False}
            if not execute or not repair_plan.needed:
                return outcome
            result = execute_repair(plan, store, run, repair_plan, lease)
            outcome |= {
                "executed": True,
                "rows": result.rows,
                "parts": [{"name": p.name, "rows": p.rows, "bytes": p.bytes} for p in result.parts],
            }
            now = iso(utc_now())
            store.save_journal(
                f"{run.run_id}:repair", plan.key, now, [{"v": 1, "type": "repair", "ts": now, **outcome}]
            )
            return outcome
    finally:
        store.close()


def _saved_partitions(path: Path, export: str, run_id: str, tasks: list[ChunkTask]) -> list[dict[str, Any]]:
    """The chunk verdicts of a saved reconcile report, which must describe the run as it is now."""
    from rivet.errors import ConfigError

    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        partitions = [
            {k: p[k] for k in ("chunk", "status", "source_count", "exported_count")} for p in saved["partitions"]
        ]
        of = (saved["export"], saved["run_id"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a report of `rivet reconcile` ({type(e).__name__}: {e})") from None
    if of != (export, run_id):
        raise ConfigError(
            f"{path} reconciles export '{of[0]}' run {of[1]}; the last checkpointed run of '{export}' is {run_id}: "
            "reconcile again"
        )
    exported = {t.chunk_index: t.rows for t in tasks}
    if {p["chunk"]: p["exported_count"] for p in partitions} != exported:
        raise ConfigError(f"{path} is older than the last repair of run {run_id}: reconcile again")
    return partitions


def _show(outcome: dict[str, Any]) -> None:
    head = f"{outcome['export']} run {outcome['run_id']}"
    for flagged in outcome["flagged"]:
        say(f"✗ chunk {flagged['chunk']}: {flagged['reason']}")
    if not outcome["chunks"] and not outcome["republish_manifest"]:
        say(f"✓ {head}: every chunk matches the source; nothing to repair")
        return
    done = outcome["executed"]
    work = []
    if outcome["chunks"]:
        chunks = ", ".join(str(c) for c in outcome["chunks"])
        work.append(f"read chunk(s) {chunks} again, replacing {len(outcome['replaced_parts'])} part(s)")
    if outcome["republish_manifest"]:
        work.append(f"{'wrote' if done else 'write'} the manifest again from the state (a repair was interrupted)")
    if not done:
        say(f"{head}: would {' and '.join(work)}; run again with --execute to repair")
        return
    written = f"{len(outcome['parts'])} new part(s) with {outcome['rows']:,} rows"
    say(f"✓ repaired {head}: {' and '.join(work)}; {written}")
