"""``rivet state``: inspect and reset incremental cursors and chunk checkpoints."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rivet.cli._output import emit_json, report_error, say

if TYPE_CHECKING:
    from rivet.config import LoadedConfig
    from rivet.state import StateStore
    from rivet.state.keys import ExportKey

app = typer.Typer(help="Inspect and reset what rivet remembers between runs.", no_args_is_help=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The rivet.yaml whose state to use.")]
ExportOption = Annotated[str, typer.Option("--export", "-e", help="The export.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def open_state(config: Path) -> tuple[LoadedConfig, StateStore]:
    """The loaded config and its state store (the caller closes the store)."""
    from rivet.config import load_config
    from rivet.state import StateStore, state_location

    loaded = load_config(config)
    return loaded, StateStore(state_location(loaded.base_dir))


@contextmanager
def state_of(config: Path) -> Iterator[tuple[LoadedConfig, StateStore]]:
    """The loaded config and its state store, closed when the block ends.

    An error in either, or in the block, ends the command with its exit code.
    """
    try:
        loaded, store = open_state(config)
        try:
            yield loaded, store
        finally:
            store.close()
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - every error maps to an exit code
        raise typer.Exit(report_error(e)) from None


def key_of(loaded: LoadedConfig, store: StateStore, name: str, *, reading: bool = True) -> ExportKey:
    """The state key of export ``name`` of the loaded config (``reading``: unclaimed state shows as its)."""
    from rivet.plan.export import key_in_store

    return key_in_store(loaded, store, name, reading=reading)


@app.command("show")
def show(config: ConfigOption, json_output: JsonOption = False) -> None:
    """Incremental cursors, change positions and the latest run of every export."""
    with state_of(config) as (loaded, store):
        rows = []
        for e in loaded.config.exports:
            key = key_of(loaded, store, e.name)
            last = store.runs([key], limit=1)
            cursor = store.cursor(key)
            position = store.change_position(key) if e.mode == "cdc" else None
            rows.append(
                {
                    "export": e.name,
                    "namespace": key.namespace,
                    "mode": e.mode,
                    "cursor": cursor.value if cursor else None,
                    **({"position": position.position, "anchor": position.anchor} if position else {}),
                    "last_run": last[0]["run_id"] if last else None,
                    "last_status": last[0]["status"] if last else None,
                }
            )
    if json_output:
        emit_json({"exports": rows})
        return
    for r in rows:
        shown = f" cursor={r['cursor']}" if r["cursor"] is not None else ""
        if r.get("position"):
            shown += f" position={r['position']} ({r['anchor']})"
        ran = f" last={r['last_run']} ({r['last_status']})" if r["last_run"] else " never run"
        typer.echo(f"{r['export']} [{r['mode']}]{shown}{ran}")


@app.command("reset")
def reset(config: ConfigOption, export: ExportOption) -> None:
    """Forget an export's incremental cursor and what its state was written for: its next run exports everything.

    State of the same export name that would clash with it (written to the same destination
    for another source, table or query) is forgotten too.
    """
    from rivet.plan.export import export_identity, table_keys

    with state_of(config) as (loaded, store):
        key = key_of(loaded, store, export, reading=False)
        removed = store.reset_cursor(key)
        store.forget(key, export_identity(loaded, loaded.export(export)))
        for table in table_keys(key, loaded.export(export)):
            store.reset_change_position(table)
    say(f"cursor of {export} {'reset' if removed else 'was not set'}; its next run starts afresh")


@app.command("rebind")
def rebind(
    config: ConfigOption,
    export: ExportOption,
    origin: Annotated[
        str | None, typer.Option("--from", help="The namespace whose state to keep (when several hold some).")
    ] = None,
) -> None:
    """Keep the state of an export whose source, table, query or cursor changed, for the export as configured.

    Its cursor and checkpoints then continue; use it when a run refused the state as
    written for another export and this is the same export, changed on purpose.
    """
    from rivet.plan.export import export_identity

    with state_of(config) as (loaded, store):
        key = key_of(loaded, store, export, reading=False)
        done = store.rebind(key, export_identity(loaded, loaded.export(export)), origin=origin)
    say(done)


@app.command("chunks")
def chunks(config: ConfigOption, export: ExportOption, json_output: JsonOption = False) -> None:
    """The chunks of the latest chunked run of an export."""
    with state_of(config) as (loaded, store):
        run = store.latest_chunk_run(key_of(loaded, store, export))
        tasks = store.chunk_tasks(run.run_id) if run else []
    if json_output:
        chunk_rows = [{k: v for k, v in dataclasses.asdict(t).items() if k != "query"} for t in tasks]
        emit_json({"run": dataclasses.asdict(run) if run else None, "chunks": chunk_rows})
        return
    if run is None:
        say(f"{export} has no chunked run")
        return
    done = sum(t.status == "done" for t in tasks)
    typer.echo(f"run {run.run_id} ({run.status}): {done} of {len(tasks)} chunks done")
    for t in tasks:
        rows = f" {t.rows:,} rows" if t.rows is not None else ""
        error = f" error: {t.last_error}" if t.last_error else ""
        typer.echo(f"  {t.chunk_index:>5} {t.status:<8} attempts={t.attempts}{rows} {t.label}{error}")


@app.command("progression")
def progression(
    config: ConfigOption,
    export: Annotated[str | None, typer.Option("--export", "-e", help="Only this export.")] = None,
    json_output: JsonOption = False,
) -> None:
    """How far each export has come: what is committed, and whether the last reconcile verified it."""
    with state_of(config) as (loaded, store):
        names = [loaded.export(export).name] if export else [e.name for e in loaded.config.exports]
        rows = [_progress_of(store, loaded.export(name), key_of(loaded, store, name)) for name in names]
    if json_output:
        emit_json({"exports": rows})
        return
    for r in rows:
        verified = r["verified"]
        check = f"; verified {verified['at']}" if verified and verified["ok"] else "; not verified"
        if verified and not verified["ok"]:
            check = f"; reconcile {verified['at']} found {verified['mismatches']} mismatch(es)"
        typer.echo(f"{r['export']} [{r['mode']}]: {r['committed'] or 'nothing committed'}{check}")


def _progress_of(store, export, key) -> dict:  # type: ignore[no-untyped-def]
    """Committed: the cursor, the last completed chunked run, or the last published run."""
    last = store.last_success(key)
    committed = f"run {last['run_id']} ({last['rows']:,} rows)" if last else None
    if export.mode in ("incremental", "time_window"):
        cursor = store.cursor(key)
        committed = f"cursor {cursor.value}" if cursor else committed
    verified = None
    chunk_run = store.latest_chunk_run(key) if export.mode == "chunked" else None
    if chunk_run is not None:
        tasks = store.chunk_tasks(chunk_run.run_id)
        done = sum(t.status == "done" for t in tasks)
        committed = f"run {chunk_run.run_id} ({chunk_run.status}): {done} of {len(tasks)} chunks"
        found = store.journals(key, run_id=f"{chunk_run.run_id}:reconcile")
        if found:
            event = found[0]["events"][0]
            ok = event["mismatches"] == 0 and event["unknown"] == 0
            verified = {"at": event["ts"], "ok": ok, "mismatches": event["mismatches"]}
    return {"export": export.name, "mode": export.mode, "committed": committed, "verified": verified}


@app.command("files")
def files(
    config: ConfigOption,
    export: ExportOption,
    last: Annotated[int, typer.Option("--last", "-n", min=1, help="How many files, newest first.")] = 50,
    json_output: JsonOption = False,
) -> None:
    """The files an export's runs committed: URL, rows, bytes, SHA-256, run."""
    with state_of(config) as (loaded, store):
        logged = store.files(key_of(loaded, store, export))[-last:][::-1]
    rows = [{k: f[k] for k in ("run_id", "url", "rows", "bytes", "sha256", "created_at")} for f in logged]
    if json_output:
        emit_json({"files": rows})
        return
    for f in rows:
        typer.echo(f"{f['created_at']}  {f['rows']:>12,} rows {f['bytes']:>14,} B  {f['url']}  ({f['run_id']})")


@app.command("reset-chunks")
def reset_chunks(
    config: ConfigOption,
    export: ExportOption,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only put the failed chunks of the unfinished run back in the queue.")
    ] = False,
    stuck: Annotated[
        bool,
        typer.Option("--stuck-checkpoints", help="Only put chunks left running by a dead run back in the queue."),
    ] = False,
    everything: Annotated[
        bool, typer.Option("--all", help="Also forget completed runs (what reconcile and repair check against).")
    ] = False,
) -> None:
    """Discard an export's unfinished checkpointed run (the next run plans afresh), or requeue some of its chunks."""
    with state_of(config) as (loaded, store):
        key = key_of(loaded, store, export)
        if not (failed or stuck):
            dropped = store.reset_chunks(key, finished_too=everything)
            which = "chunked run(s)" if everything else "unfinished chunked run(s)"
            say(f"dropped {dropped} {which} of {export}")
            store.close()
            return
        message = _requeue(store, key, ["failed"] * failed + ["running"] * stuck, config)
    say(message)


def _requeue(store, key, statuses: list[str], config: Path) -> str:  # type: ignore[no-untyped-def]
    """Requeue the chunks in ``statuses`` of the export's unfinished run.

    The export's lease is held meanwhile, so no run of it is alive: a running chunk of a
    live run is not stuck.
    """
    from rivet.core.runinfo import iso, utc_now
    from rivet.state.lease import ExportLease

    run = store.open_chunk_run(key)
    if run is None:
        return f"{key.name} has no unfinished chunked run"
    with ExportLease(store, key, f"reset-chunks-{run.run_id}"):
        count = sum(store.requeue_with_status(run.run_id, status, iso(utc_now())) for status in statuses)
    command = f"rivet run --resume -c {shlex.quote(str(config))} -e {key.name}"
    return f"{count} chunk(s) of run {run.run_id} back in the queue: `{command}` reads them"
