"""The notebook API: ``rivet.export(...)`` and ``rivet.run(...)``."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from rivet.app.runner import run_config
from rivet.config import LoadedConfig, format_errors, load_config
from rivet.config.models import RivetConfig
from rivet.core.events import CallbackObserver
from rivet.core.redact import redact_url
from rivet.errors import ConfigError
from rivet.execution import run_export
from rivet.execution.options import RunOptions
from rivet.execution.results import ExportResult, RunResult
from rivet.plan.export import build_plan
from rivet.state import StateStore, state_location
from rivet.ui import progress
from rivet.ui.cards import Cards

if TYPE_CHECKING:
    import pyarrow as pa


def _source_settings(source: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    from rivet.sources.registry import FILE_DATABASE, kind_of_url

    if (named := kind_of_url(source)) is not None:
        return {"type": named[0], "url": source}
    if os.path.isfile(source):
        return {"type": FILE_DATABASE, "path": os.path.abspath(source)}
    raise ConfigError(
        f"source: cannot tell what '{redact_url(source)}' is; pass a postgresql://, mysql:// or sqlite:/// URL, "
        "a SQLite file path, or a dict in the rivet.yaml source form"
    )


def _name_of(settings: Mapping[str, Any], table: str | None, default: str) -> str:
    """An export name from a table's own name (``h2."User"`` -> ``User``), safe in file names."""
    if table is None:
        return default
    from rivet.sources.registry import dialect_for

    last = dialect_for(str(settings.get("type", "postgres"))).table_name(table)[-1]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", last).strip("_-") or default


def _plan(
    source: str | Mapping[str, Any], query: str | None, table: str | None, entry: dict[str, Any], what: str
) -> Any:
    """The plan of one export (or read) given as keyword arguments."""
    entry = {**entry, **{k: v for k, v in (("query", query), ("table", table)) if v is not None}}
    raw = {"source": _source_settings(source), "exports": [entry]}
    try:
        config = RivetConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"invalid {what} arguments\n" + format_errors(e, raw)) from None
    loaded = LoadedConfig(config=config, path=None, base_dir=Path.cwd(), variables=dict(os.environ))
    return build_plan(loaded, config.exports[0])


def _read_plan(
    source: str | Mapping[str, Any],
    query: str | None,
    table: str | None,
    parallel: int,
    chunk_column: str | None,
    columns: Mapping[str, str] | None,
    engine: str,
    tuning: Mapping[str, Any] | None,
    chunk_by_key: str | Sequence[str] | None = None,
) -> Any:
    settings = _source_settings(source)
    settings = {**settings, "engine": engine}
    entry: dict[str, Any] = {
        "name": _name_of(settings, table, "read"),
        "destination": "memory://rivet-read",  # never written: a read keeps its rows in memory
        "columns": dict(columns or {}),
    }
    if chunk_column is not None:
        entry |= {"mode": "chunked", "chunk_column": chunk_column, "parallel": parallel}
    elif chunk_by_key is not None:
        keys = chunk_by_key if isinstance(chunk_by_key, str) else list(chunk_by_key)
        entry |= {"mode": "chunked", "chunk_by_key": keys, "parallel": parallel}
    elif parallel > 1:
        entry |= {"parallel": parallel} if table is not None else {"mode": "chunked", "parallel": parallel}
    from rivet.sources.registry import capabilities_for

    if parallel > 1 and capabilities_for(str(settings["type"])).shares_snapshots:
        entry["snapshot"] = "consistent"  # the workers read one snapshot, as one statement would
    if tuning:
        entry["tuning"] = dict(tuning)
    return _plan(settings, query, table, entry, "read")


def read(
    source: str | Mapping[str, Any],
    *,
    query: str | None = None,
    table: str | None = None,
    parallel: int = 1,
    chunk_column: str | None = None,
    columns: Mapping[str, str] | None = None,
    engine: str = "native",
    tuning: Mapping[str, Any] | None = None,
    chunk_by_key: str | Sequence[str] | None = None,
) -> pa.Table:
    """Read a query or table into an Arrow table, with the types and checks of an export.

    Args:
        source: as for :func:`export`.
        query: the SQL to read (or give ``table``).
        table: ``[schema.]table`` to read whole.
        parallel: worker connections. Above 1, a table on PostgreSQL is split by pages, a
            query (or a MySQL table) by ``chunk_column`` (default: the table's primary key);
            PostgreSQL workers share one snapshot.
        chunk_column: split the read into key ranges of this column.
        columns: type overrides, as ``columns:`` in rivet.yaml.
        engine: ``native`` (default), ``auto`` or ``connectorx``.
        tuning: as ``tuning:`` in rivet.yaml.
        chunk_by_key: split the read into keyset ranges of this unique key (a column or a list),
            for a key that is text, a UUID or several columns.

    Raises:
        ConfigError: invalid arguments. RivetError: the read failed (no partial table is returned).
    """
    from rivet.app.reading import read_table

    plan = _read_plan(source, query, table, parallel, chunk_column, columns, engine, tuning, chunk_by_key)
    return read_table(plan)


def read_polars(
    source: str | Mapping[str, Any],
    *,
    query: str | None = None,
    table: str | None = None,
    parallel: int = 1,
    chunk_column: str | None = None,
    columns: Mapping[str, str] | None = None,
    engine: str = "native",
    tuning: Mapping[str, Any] | None = None,
    chunk_by_key: str | Sequence[str] | None = None,
) -> Any:
    """Like :func:`read`, as a polars DataFrame (from the Arrow table, without copying)."""
    try:
        import polars as pl
    except ImportError:
        raise ConfigError('read_polars needs polars: pip install "rivet[polars]"') from None
    from rivet.app.reading import read_batches

    plan = _read_plan(source, query, table, parallel, chunk_column, columns, engine, tuning, chunk_by_key)

    # Each batch becomes polars as it arrives, its text already in polars' layout (views over
    # the decoded bytes) and each column imported on its own: nothing is copied or kept twice.
    def frame(batch: pa.RecordBatch) -> pl.DataFrame:
        converted = pl.from_arrow(batch, rechunk=False)
        assert isinstance(converted, pl.DataFrame)
        return converted

    schema, frames = read_batches(plan, frame, text_views=True)
    if not frames:
        return pl.from_arrow(schema.empty_table())
    return pl.concat(frames, rechunk=False)


def stream(
    source: str | Mapping[str, Any],
    *,
    query: str | None = None,
    table: str | None = None,
    columns: Mapping[str, str] | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Any:
    """A consume-once stream of bounded Arrow batches (``__arrow_c_stream__``) of one read.

    ``pyarrow.RecordBatchReader.from_stream(s)``, ``polars.from_arrow(s)``, ``duckdb.sql("FROM s")``
    take it; the counts are checked when the last batch has been read.
    """
    from rivet.app.reading import BatchStream

    plan = _read_plan(source, query, table, 1, None, columns, "native", tuning)
    return BatchStream(plan.source.scan(plan.query, plan.overrides, plan.tuning), f"stream {plan.name}")


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
    """Export one query or table to Parquet or CSV files, or a Delta or Iceberg table.

    Args:
        source: ``postgresql://...`` or ``mysql://...`` URL, ``sqlite:///file.db`` URL or path, or a dict
            shaped like the ``source:`` block of rivet.yaml.
        query: the SQL to export (or give ``table``).
        table: ``[schema.]table`` to export whole.
        destination: a local path or fsspec URL (``s3://bucket/prefix``), or a dict shaped
            like an export's ``destination:`` block.
        format: ``parquet``, ``csv``, ``delta`` (a Delta Lake table, ``pip install "rivet[delta]"``) or
            ``iceberg`` (an Iceberg table, ``pip install "rivet[iceberg]"``; its catalog is
            ``.rivet_iceberg.db`` in the working directory unless ``iceberg={"catalog_url": ...}``).
        mode: ``full``.
        name: the export's name, used in file names (default: the table name, or ``export``).
        state_dir: keep run metrics and the file log in ``<state_dir>/.rivet_state.db`` (the folder is made).
        **options: any other export key of rivet.yaml, e.g. ``compression="snappy"``,
            ``max_file_size="256MB"``, ``columns={"amount": "decimal(20,4)"}``, ``tuning={...}``.

    Returns:
        The result: rows, files, bytes, duration, schema.

    Raises:
        ConfigError: invalid arguments.
        RivetError: the export failed; nothing that looks complete is left behind.
    """
    export_name = name or _name_of(_source_settings(source), table, "export")
    entry: dict[str, Any] = {"name": export_name, "format": format, "mode": mode, "destination": destination}
    plan = _plan(source, query, table, entry | options, "export")
    state = None
    if state_dir is not None:
        Path(state_dir).mkdir(parents=True, exist_ok=True)  # a new folder is where a notebook keeps its state
        state = StateStore(state_location(Path(state_dir)))
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
    dask_client: Any = None,
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
    how many run at once (default: the number of cores). ``dask_client``: a
    ``distributed.Client`` whose workers read the chunks of chunked exports (this
    process plans, keeps the state and publishes).
    """
    cluster = None
    if dask_client is not None:
        from rivet.execution.cluster import Cluster

        cluster = Cluster(dask_client)
    return run_config(
        load_config(config, params),
        exports,
        options=RunOptions(resume=resume, wait=wait, validate=validate, reconcile=reconcile, cluster=cluster),
        parallel=parallel,
        max_parallel=max_parallel,
        params=params,
    )
