"""The notebook API: ``rivet.export(...)`` and ``rivet.run(...)``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rivet import progress
from rivet.cards import Cards
from rivet.config import LoadedConfig, format_errors, load_config
from rivet.config.models import RivetConfig
from rivet.engine import run_export
from rivet.errors import ConfigError
from rivet.events import CallbackObserver
from rivet.options import RunOptions
from rivet.planning.export import build_plan
from rivet.redact import redact_url
from rivet.results import ExportResult, RunResult
from rivet.runner import run_config
from rivet.state import StateStore, state_location


def _source_settings(source: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    if source.startswith(("postgres://", "postgresql://")):
        return {"type": "postgres", "url": source}
    if source.startswith(("mysql://", "mariadb://")):
        return {"type": "mysql", "url": source}
    if source.startswith("sqlite:///"):
        return {"type": "sqlite", "url": source}
    if os.path.isfile(source):
        return {"type": "sqlite", "path": os.path.abspath(source)}
    raise ConfigError(
        f"source: cannot tell what '{redact_url(source)}' is; pass a postgresql://, mysql:// or sqlite:/// URL, "
        "a SQLite file path, or a dict in the rivet.yaml source form"
    )


def export(
    source: str | Mapping[str, Any],
    *,
    query: str | None = None,
    table: str | None = None,
    destination: str | Mapping[str, Any],
    format: str = "parquet",
    mode: str = "full",
    name: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> ExportResult:
    """Export one query or table to Parquet or CSV files.

    Args:
        source: ``postgresql://...`` or ``mysql://...`` URL, ``sqlite:///file.db`` URL or path, or a dict
            shaped like the ``source:`` block of rivet.yaml.
        query: the SQL to export (or give ``table``).
        table: ``[schema.]table`` to export whole.
        destination: a local path or fsspec URL (``s3://bucket/prefix``), or a dict shaped
            like an export's ``destination:`` block.
        format: ``parquet`` or ``csv``.
        mode: ``full``.
        name: the export's name, used in file names (default: the table name, or ``export``).
        state_dir: keep run metrics and the file log in ``<state_dir>/.rivet_state.db``.
        **options: any other export key of rivet.yaml, e.g. ``compression="snappy"``,
            ``max_file_size="256MB"``, ``columns={"amount": "decimal(20,4)"}``, ``tuning={...}``.

    Returns:
        The result: rows, files, bytes, duration, schema.

    Raises:
        ConfigError: invalid arguments.
        RivetError: the export failed; nothing that looks complete is left behind.
    """
    export_name = name or (table.split(".")[-1] if table else "export")
    entry: dict[str, Any] = {"name": export_name, "format": format, "mode": mode, "destination": destination}
    entry.update({k: v for k, v in (("query", query), ("table", table)) if v is not None})
    entry.update(options)
    raw = {"source": _source_settings(source), "exports": [entry]}
    try:
        config = RivetConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError("invalid export arguments\n" + format_errors(e, raw)) from None
    loaded = LoadedConfig(config=config, path=None, base_dir=Path.cwd(), variables=dict(os.environ))
    plan = build_plan(loaded, config.exports[0])
    state = StateStore(state_location(Path(state_dir))) if state_dir is not None else None
    try:
        # A terminal or a notebook shows the export's progress; scripts stay quiet.
        with Cards([plan.name]) if progress.live() else nullcontext() as cards:
            observer = CallbackObserver(cards.event) if cards is not None else None
            result = run_export(plan, state, observer=observer)
            if cards is not None:
                cards.finish(result)
    finally:
        if state is not None:
            state.close()
    if result.exception is not None:
        raise result.exception
    return result


def run(
    config: str | os.PathLike[str],
    exports: Sequence[str] | None = None,
    *,
    params: Mapping[str, str] | None = None,
    resume: bool = False,
    parallel: str | None = None,
    max_parallel: int | None = None,
    wait: bool = False,
    validate: bool = False,
    reconcile: bool = False,
) -> RunResult:
    """Run the exports of a rivet.yaml (all, or those named), like ``rivet run -c``.

    Failed exports are reported in the result (``result.ok``, ``result.exit_code``),
    not raised, so one failure does not hide the others. ``resume=True`` continues
    the unfinished checkpointed chunked runs of the selected exports; ``wait=True``
    waits for a running run of the same export instead of failing; ``validate=True``
    reads every new part back before committing; ``reconcile=True`` compares each
    read with a ``COUNT(*)`` in its own snapshot.
    ``parallel="processes"`` runs each export in its own process (isolated),
    ``parallel="threads"`` as threads of this process; ``max_parallel`` bounds
    how many run at once (default: the number of cores).
    """
    return run_config(
        load_config(config, params),
        exports,
        options=RunOptions(resume=resume, wait=wait, validate=validate, reconcile=reconcile),
        parallel=parallel,
        max_parallel=max_parallel,
        params=params,
    )
