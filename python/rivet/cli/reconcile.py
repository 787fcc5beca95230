"""``rivet reconcile``: count every chunk of an export's last checkpointed run again on the source."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rivet.cli._output import emit_json, report_error, say
from rivet.errors import EXIT_DATA

if TYPE_CHECKING:
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore
    from rivet.state.keys import ExportKey
    from rivet.state.rows import ChunkRun, ChunkTask


def reconcile_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="The rivet.yaml of the export.")],
    export: Annotated[str, typer.Option("--export", "-e", help="The chunked export to reconcile.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the JSON report here.")] = None,
) -> None:
    """Recount each chunk of the export's last checkpointed run on the source; compare with what was published.

    Exit codes: 0 every chunk matches, 3 a chunk differs (or was never finished), 2 bad config.
    """
    try:
        report = reconcile(config, export)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None
    if output is not None:
        output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    summary = report["summary"]
    if json_output:
        emit_json(report)
    else:
        for p in report["partitions"]:
            if p["status"] != "match":
                say(f"✗ chunk {p['chunk']} {p['label']}: source {p['source_count']}, exported {p['exported_count']}")
        mark = "✓" if summary["mismatches"] == 0 and summary["unknown"] == 0 else "✗"
        say(
            f"{mark} {export} run {report['run_id']}: {summary['matches']} of {summary['total_partitions']} chunks "
            f"match ({summary['total_source_rows']:,} rows on the source, {summary['total_exported_rows']:,} exported)"
        )
    if summary["mismatches"] or summary["unknown"]:
        raise typer.Exit(EXIT_DATA)


def reconcile(config: Path, export: str) -> dict[str, Any]:
    """The reconcile report of ``export``'s latest checkpointed chunked run."""
    from rivet.cli.state import key_of, open_state
    from rivet.plan.export import build_plan

    loaded, store = open_state(config)
    try:
        # State no run has claimed yet (kept before namespaces) is the export's too.
        plan = dataclasses.replace(build_plan(loaded, loaded.export(export)), state_key=key_of(loaded, store, export))
        run = checked_chunk_run(store, plan)
        report = count_chunks(plan, run, store.chunk_tasks(run.run_id))
        _remember(store, plan.key, report)
    finally:
        store.close()
    return report


def checked_chunk_run(store: StateStore, plan: ExportPlan) -> ChunkRun:
    """The export's latest checkpointed run, made by the config as it is now."""
    from rivet.errors import ConfigError

    export = plan.name
    run = store.latest_chunk_run(plan.key)
    if run is None:
        why = (
            "it has not run since its checkpoints were kept or discarded (rivet state reset-chunks --all)"
            if plan.checkpoint
            else "chunk_checkpoint: true keeps one; for other exports use `rivet run --reconcile`, which counts "
            "within the read's snapshot"
        )
        raise ConfigError(f"export '{export}' has no checkpointed chunked run to reconcile: {why}")
    if not run.part_stem:
        raise ConfigError(
            f"run {run.run_id} of export '{export}' was carried over from the original rivet's state: "
            "its chunks are the original's key ranges; run the export with this rivet, then reconcile that run"
        )
    if run.status == "failed":
        raise ConfigError(
            f"run {run.run_id} of export '{export}' failed a check and its output was taken back: "
            "nothing of it to reconcile"
        )
    if run.fingerprint != plan.fingerprint():
        raise ConfigError(
            f"export '{export}': its query or chunking changed since run {run.run_id}; "
            "reconcile compares a run with the config that made it"
        )
    if plan.source.dialect.begin_read_only is None:
        raise ConfigError(f"export '{export}': reconcile counts on PostgreSQL or MySQL/MariaDB sources")
    return run


def count_chunks(plan: ExportPlan, run: ChunkRun, tasks: list[ChunkTask]) -> dict[str, Any]:
    """Count each chunk of ``run`` on the source and compare with what its parts hold."""
    import pyarrow as pa

    from rivet.execution.checkpoints import rebuilt_queries

    session = plan.server.session()
    decimal, text = plan.server.split_overrides(plan.overrides)
    schema = pa.schema(session.describe(plan.query, decimal, text))
    # Each chunk's SQL is made again from the plan: the state store's SQL text is never run.
    queries = rebuilt_queries(plan, session, schema, run.run_id, tasks)
    begin = plan.source.dialect.begin_read_only
    assert begin is not None  # checked with the run
    session.query(begin)
    partitions = []
    for task in tasks:
        exported = task.rows if task.status == "done" else None
        counted = session.query(f"SELECT COUNT(*) FROM ({queries[task.chunk_index]}) AS _rivet_reconcile")
        source = int(counted[0][0] or 0)
        status = "unknown" if exported is None else "match" if source == exported else "mismatch"
        partitions.append(
            {
                "chunk": task.chunk_index,
                "label": task.label,
                "source_count": source,
                "exported_count": exported,
                "status": status,
            }
        )
    return {
        "export": plan.name,
        "run_id": run.run_id,
        "run_status": run.status,
        "partitions": partitions,
        "summary": {
            "total_partitions": len(partitions),
            "matches": sum(p["status"] == "match" for p in partitions),
            "mismatches": sum(p["status"] == "mismatch" for p in partitions),
            "unknown": sum(p["status"] == "unknown" for p in partitions),
            "total_source_rows": sum(p["source_count"] for p in partitions),
            "total_exported_rows": sum(p["exported_count"] or 0 for p in partitions),
        },
    }


def _remember(store: StateStore, key: ExportKey, report: dict[str, Any]) -> None:
    """Keep the verdict in the state store: ``rivet state progression`` shows the last one."""
    from rivet.core.runinfo import iso, utc_now

    now = iso(utc_now())
    event = {"v": 1, "type": "reconcile", "export": report["export"], "ts": now, **report["summary"]}
    store.save_journal(f"{report['run_id']}:reconcile", key, now, [event])
