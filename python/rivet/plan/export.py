"""Resolving one export of a config into a plain, serialisable plan."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rivet.config import ExportConfig, LoadedConfig
from rivet.config.interpolate import expand
from rivet.config.layout import destination_urls, shared_folders
from rivet.config.sizes import parse_size
from rivet.config.tuning import MIB, Tuning, resolve_tuning
from rivet.errors import ConfigError
from rivet.output import OutputFormat, output_format
from rivet.output.base import ParquetLayout
from rivet.output.meta import MetaColumns
from rivet.output.native import NativeTypes
from rivet.output.partition import Partitioning
from rivet.output.quality import DEFAULT_UNIQUE_MAX_ENTRIES, QualitySpec
from rivet.output.tables import TABLE_FORMATS, table_format
from rivet.output.tables.base import TableFormat
from rivet.output.tables.iceberg import IcebergFormat, IcebergTable
from rivet.plan.checks import check_export
from rivet.plan.chunks import Chunk, ChunkSpec
from rivet.sources import AnySource, ColumnOverrides, parse_overrides, resolve_source
from rivet.sources.changes import ChangeFeed, ChangeSpec
from rivet.sources.network import NetworkSource
from rivet.state.keys import (
    UNCLAIMED,
    ExportIdentity,
    ExportKey,
    configured_namespace,
    export_key,
    query_target,
)
from rivet.storage.destinations import DestinationSpec, resolve_destination

# Formats whose parts are Parquet files committed to a table format's log.
# Modes whose runs add to what the runs before published (with a state store).
APPENDING_MODES = ("incremental", "time_window")


if TYPE_CHECKING:
    from rivet.state import StateStore


@dataclass(frozen=True)
class CursorSpec:
    """Incremental mode: the cursor column, and the fallback for rows where it is NULL."""

    column: str
    fallback: str | None = None


@dataclass(frozen=True)
class WindowSpec:
    """Time-window mode: rows whose time column is within the last ``days`` days (UTC)."""

    column: str
    kind: str
    days: int


@dataclass(frozen=True)
class ExportPlan:
    """Everything one export needs; the engine never reads the YAML again."""

    name: str
    mode: str
    query: str
    source: AnySource
    overrides: ColumnOverrides
    format: OutputFormat
    max_file_size: int | None
    destination: DestinationSpec
    tuning: Tuning
    parallel: int = 1
    table: str | None = None
    # tables: (mode: cdc): each table's folder in the destination (as configured) and qualified name.
    tables: tuple[tuple[str, str], ...] = ()
    chunking: ChunkSpec | None = None
    checkpoint: bool = False
    # A checkpointed run publishes a worker's part at a chunk boundary once it is this old.
    checkpoint_every_s: float = 30.0
    max_attempts: int = 1
    consistent: bool = False
    # source.engine: auto, native or connectorx (resolved per export when it runs).
    engine: str = "native"
    cursor: CursorSpec | None = None
    window: WindowSpec | None = None
    # mode cdc: the slot or replica id the changes are read through, and the initial snapshot.
    changes: ChangeSpec | None = None
    # write: merge: the columns rows are matched by (empty: the primary key); None: runs append.
    merge_keys: tuple[str, ...] | None = None
    # Chunks computed ahead (by ``rivet plan``); None: planned when the export runs.
    chunks: tuple[Chunk, ...] | None = None
    # Count every read's rows with COUNT(*) in its own snapshot and compare (--reconcile).
    reconcile: bool = False
    # Read the published parts back and check them against the manifest (--validate).
    validate: bool = False
    # Leave the parts a full or chunked run supersedes at the destination.
    keep_superseded: bool = False
    meta: MetaColumns = dataclasses.field(default_factory=MetaColumns)
    # A run that reads no rows publishes nothing (status ``skipped``).
    skip_empty: bool = False
    quality: QualitySpec | None = None
    on_schema_drift: str = "warn"
    shape_drift_warn_factor: float = 2.0
    partitioning: Partitioning | None = None
    # A table format the parts are also committed to ("delta", "iceberg"), or None: files and the manifest.
    table_format: str | None = None
    # With table_format "iceberg": the catalog and table.
    iceberg: IcebergTable | None = None
    # executor.allow_plaintext: a tcp:// scheduler may run exports that have credentials.
    cluster_plaintext: bool = False
    # Whose rows of the state store are this export's, and what its state is about.
    state_key: ExportKey | None = None
    identity: ExportIdentity | None = None
    # The config file, for commands in messages (None: an export made in Python).
    config_path: str | None = None

    @property
    def key(self) -> ExportKey:
        """The export's key in the state store."""
        assert self.state_key is not None, "plans are built by build_plan"
        return self.state_key

    def command(self, verb: str) -> str:
        """``rivet <verb> -c <config> -e <name>``, ready to paste (without ``-c`` for an export made in Python)."""
        where = f" -c {shlex.quote(self.config_path)}" if self.config_path else ""
        return f"rivet {verb}{where} -e {self.name}"

    @property
    def appends(self) -> bool:
        """Whether a run adds to the parts of the runs before (given a state store) instead of replacing them."""
        return self.mode in APPENDING_MODES or self.keyset_incremental

    @property
    def keyset_incremental(self) -> bool:
        """Whether each run reads only the keys after those the last run published (chunk_by_key)."""
        return self.chunking is not None and self.chunking.incremental

    @property
    def is_parallel(self) -> bool:
        """Whether the threaded chunk engine runs this export."""
        return self.chunking is not None or self.parallel > 1

    @property
    def server(self) -> NetworkSource:
        """The source as a server with sessions (chunked reads, planning); a file source is refused."""
        if not isinstance(self.source, NetworkSource):
            raise ConfigError(
                f"export '{self.name}': {self.source.redacted()} is a file, not a server to open sessions on"
            )
        return self.source

    def change_feed(self) -> ChangeFeed:
        """The feed of this ``mode: cdc`` export's table changes (a ConfigError for any other export)."""
        tables = [qualified for _, qualified in self.tables] or ([self.table] if self.table else [])
        if self.changes is None or not tables:
            raise ConfigError(f"export '{self.name}' is not a mode: cdc export")
        return self.server.change_feed([self.source.dialect.table_name(t) for t in tables], self.changes, self.name)

    def table_plans(self) -> list[ExportPlan]:
        """Each table of a ``tables:`` export as an export of its own: into its folder, under its own name and key.

        The name (``<export>.<table>``) names its parts and its rows in the state store:
        its position, its runs, the columns it published.
        """
        plans = []
        for folder, qualified in self.tables:
            name = table_export_name(self.name, folder)
            plans.append(
                dataclasses.replace(
                    self,
                    name=name,
                    table=qualified,
                    tables=(),
                    query=f"SELECT * FROM {qualified}",
                    destination=self.destination.child(folder),
                    state_key=ExportKey(self.key.namespace, name),
                )
            )
        return plans

    @property
    def lake_table(self) -> TableFormat | None:
        """The table format the parts are also committed to, or None."""
        return table_format(self.table_format, self.iceberg) if self.table_format is not None else None

    def fingerprint(self) -> str:
        """Hash of what decides the output and its chunks (not the parallelism)."""
        basis = json.dumps(
            [
                self.mode,
                self.query,
                *([list(self.tables)] if self.tables else []),
                self.overrides.decimal,
                self.overrides.other,
                self.format.kind,
                *([self.table_format] if self.table_format else []),
                _chunking_basis(self.chunking),
                self.cursor.__dict__ if self.cursor else None,
                self.window.__dict__ if self.window else None,
                *([self.changes.initial] if self.changes else []),
                *(["merge", *self.merge_keys] if self.merge_keys is not None else []),
                # Only when set, so runs checkpointed before meta columns existed still resume.
                *([self.meta.__dict__] if self.meta != MetaColumns() else []),
                *([self.partitioning.__dict__] if self.partitioning else []),
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(basis.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready view with credentials redacted."""
        return {
            "export": self.name,
            "mode": self.mode,
            "query": self.query,
            "source": self.source.redacted(),
            "format": self.table_format or self.format.kind,
            "compression": self.format.compression,
            "compression_level": self.format.level,
            "max_file_size": self.max_file_size,
            "destination": self.destination.shown,
            "tuning": self.tuning.__dict__,
            "parallel": self.parallel,
            "chunking": self.chunking.__dict__ if self.chunking else None,
            "checkpoint": self.checkpoint,
            "snapshot": "consistent" if self.consistent else None,
            "engine": self.engine,
            "cursor": self.cursor.__dict__ if self.cursor else None,
            "time_window": self.window.__dict__ if self.window else None,
            **({"cdc": self.changes.__dict__} if self.changes else {}),
            **({"merge_keys": list(self.merge_keys)} if self.merge_keys is not None else {}),
            "partition_by": list(self.partitioning.columns) if self.partitioning else None,
            **({"iceberg_table": self.iceberg.shown} if self.iceberg else {}),
            "fingerprint": self.fingerprint(),
        }


def table_export_name(export: str, table: str) -> str:
    """The name a table of ``tables:`` is published and kept in the state store under."""
    return f"{export}.{table}"


def table_keys(key: ExportKey, export: ExportConfig) -> list[ExportKey]:
    """The state keys of the tables of a ``tables:`` export (none for any other)."""
    return [ExportKey(key.namespace, table_export_name(export.name, t)) for t in export.tables or ()]


def qualified_table(table: str, source: AnySource) -> str:
    """``"schema"."table"`` for ``table: schema.table``."""
    return source.dialect.qualified(table)


def table_query(table: str, source: AnySource) -> str:
    """``SELECT * FROM "schema"."table"``."""
    return "SELECT * FROM " + qualified_table(table, source)


def _statement(text: str) -> str:
    """A query as one statement rivet can wrap: without the ``;`` that ends it in a file or an editor."""
    return text.strip().rstrip(";").rstrip()


def _query_text(export: ExportConfig, base_dir: Path, source: AnySource, variables: Mapping[str, str]) -> str:
    if export.query is not None:
        return _statement(export.query)
    if export.table is not None:
        return table_query(export.table, source)
    if export.tables:
        return table_query(export.tables[0], source)  # what describes the export (its first table)
    assert export.query_file is not None
    path = (base_dir / export.query_file).resolve()
    if not path.is_relative_to(base_dir.resolve()):
        raise ConfigError(f"exports.{export.name}.query_file: {export.query_file} is outside the config directory")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"exports.{export.name}.query_file: cannot read {path}: {e.strerror or e}") from None
    # ${NAME} in the file expands as it does in the config (the environment, then --param).
    return _statement(str(expand(text, variables, ("exports", export.name, f"query_file {export.query_file}"))))


def export_destination(loaded: LoadedConfig, export: ExportConfig, now: dt.datetime) -> DestinationSpec:
    """The export's destination; in a folder shared with other exports, with its own manifest names."""
    spec = resolve_destination(export.destination, loaded.base_dir, export.name, now)
    if destination_urls(loaded)[export.name] in shared_folders(loaded):
        spec = dataclasses.replace(spec, owner=export.name)
    return spec


def with_read_timeout(source: AnySource, tuning: Tuning) -> AnySource:
    """The source with its read deadline: as configured, else the statement timeout plus 30 s.

    A server silent for longer is taken for a lost connection (and retried); with no
    statement timeout there is no deadline, and keepalive probes still notice a dead peer.
    """
    if not isinstance(source, NetworkSource) or source.read_timeout_s is not None or not tuning.statement_timeout_s:
        return source
    return dataclasses.replace(source, read_timeout_s=float(tuning.statement_timeout_s + 30))


def _chunking_basis(chunking: ChunkSpec | None) -> dict[str, Any] | None:
    """What of the chunking decides a run: keyset keys and window only when set, so older runs still resume."""
    if chunking is None:
        return None
    return {k: v for k, v in chunking.__dict__.items() if k not in ("keys", "incremental") or v}


def build_plan(loaded: LoadedConfig, export: ExportConfig, now: dt.datetime | None = None) -> ExportPlan:
    """Resolve ``export``: source connection, query text, format, destination, tuning, mode."""
    now = now or dt.datetime.now(dt.timezone.utc)
    config = loaded.config
    tuning = resolve_tuning(config.source.tuning, export.tuning)
    source = with_read_timeout(resolve_source(config.source, loaded.base_dir), tuning)
    parallel = export.parallel or 1
    check_export(loaded, export)  # what run, check and check --config-only all refuse alike
    chunking = None
    if export.mode == "full" and parallel > 1 and not source.catalog.capabilities.splits_tables_by_pages:
        # MySQL has no physical row address to split by: a parallel full read uses key ranges.
        chunking = ChunkSpec(column=None, size=100_000, min_chunks=4 * parallel)
    if export.mode == "chunked":
        chunking = ChunkSpec(
            column=export.chunk_column,
            size=export.chunk_size or 100_000,
            count=export.chunk_count,
            by_days=export.chunk_by_days,
            dense=bool(export.chunk_dense),
            counted=export.chunk_strategy == "count",
            keys=export.keyset_columns,
            incremental=bool(export.keyset_incremental),
        )
    cursor = None
    if export.mode == "incremental":
        assert export.cursor_column is not None
        cursor = CursorSpec(export.cursor_column, export.cursor_fallback_column)
    window = None
    if export.mode == "time_window":
        assert export.time_column is not None and export.days_window is not None
        window = WindowSpec(export.time_column, export.time_column_type or "timestamp", export.days_window)
    changes = None
    if export.mode == "cdc":
        # until_current is checked when loaded; commit_every_s paces `run --follow`, not a run.
        cdc = export.cdc.model_dump(exclude={"until_current", "commit_every_s"}) if export.cdc else {}
        if cdc.get("max_lag_bytes") is not None:
            cdc["max_lag_bytes"] = parse_size(cdc["max_lag_bytes"])
        changes = ChangeSpec.for_export(export.name, **cdc)
    query = _query_text(export, loaded.base_dir, source, loaded.variables)
    identity = _identity(loaded, export, source, query)
    return ExportPlan(
        name=export.name,
        mode=export.mode,
        query=query,
        source=source,
        overrides=parse_overrides(export.columns),
        format=dataclasses.replace(
            output_format(
                "parquet" if export.format in TABLE_FORMATS else export.format,
                export.compression,
                export.compression_level,
                export.compression_profile,
            ),
            layout=_parquet_layout(export),
        ),
        max_file_size=parse_size(export.max_file_size) if export.max_file_size is not None else None,
        destination=export_destination(loaded, export, now),
        tuning=tuning,
        parallel=parallel,
        table=qualified_table(export.table, source) if export.table else None,
        tables=tuple((t, qualified_table(t, source)) for t in export.tables or ()),
        chunking=chunking,
        checkpoint=bool(export.chunk_checkpoint),
        checkpoint_every_s=export.checkpoint_every_s,
        max_attempts=export.chunk_max_attempts or tuning.max_retries + 1,
        consistent=export.snapshot == "consistent",
        engine=config.source.engine,
        cursor=cursor,
        window=window,
        changes=changes,
        merge_keys=tuple(export.merge_keys or ()) if export.write == "merge" else None,
        keep_superseded=export.keep_superseded_parts,
        table_format=export.format if export.format in TABLE_FORMATS else None,
        iceberg=(
            IcebergTable.from_config(export.iceberg, export.name, loaded.base_dir)
            if export.format == IcebergFormat.name
            else None
        ),
        meta=_meta_columns(export),
        skip_empty=export.skip_empty,
        quality=_quality(export),
        on_schema_drift=export.on_schema_drift,
        shape_drift_warn_factor=export.shape_drift_warn_factor,
        partitioning=(
            Partitioning(export.partition_columns, export.partition_granularity) if export.partition_columns else None
        ),
        state_key=export_key(export.name, identity, configured_namespace(config.state.namespace)),
        identity=identity,
        config_path=str(loaded.path) if loaded.path else None,
        cluster_plaintext=config.executor.allow_plaintext,
    )


def _identity(loaded: LoadedConfig, export: ExportConfig, source: AnySource, query: str) -> ExportIdentity:
    """What the export's state is about: its source, table or query, cursor and destination folder."""
    cursor: str | None = None
    if export.mode == "incremental":
        cursor = "|".join(filter(None, (export.cursor_column, export.cursor_fallback_column)))
    elif export.keyset_incremental:
        cursor = "keyset:" + ",".join(export.keyset_columns)
    else:
        cursor = f"time:{export.time_column}" if export.mode == "time_window" else None
    return ExportIdentity(
        source=source.identity(),
        target=_target(export, source, query),
        cursor=cursor or None,
        destination=destination_urls(loaded)[export.name],
    )


def _target(export: ExportConfig, source: AnySource, query: str) -> str:
    """What the export reads, for its identity: a table, tables, or its query."""
    if export.table:
        return f"table:{qualified_table(export.table, source)}"
    if export.tables:
        # Each table's state is its own (under its own name): the list may grow or shrink.
        return "tables"
    return query_target(query)


def export_identity(loaded: LoadedConfig, export: ExportConfig) -> ExportIdentity:
    """What ``export``'s state is about, resolved without connecting (the source URL must be known)."""
    source = resolve_source(loaded.config.source, loaded.base_dir)
    return _identity(loaded, export, source, _query_text(export, loaded.base_dir, source, loaded.variables))


def state_key(loaded: LoadedConfig, export: ExportConfig, namespaces: list[str], *, reading: bool = True) -> ExportKey:
    """The key of ``export`` for commands that inspect or reset state (``namespaces``: those holding its name).

    Where the source cannot be resolved here (its URL variable is not set), the one
    namespace that holds state of the export's name is taken. ``reading``: state no
    run has claimed yet (kept before namespaces, or the original tool's) is shown as
    the export's until its next run claims it.
    """
    namespace = configured_namespace(loaded.config.state.namespace)
    try:
        key = export_key(export.name, export_identity(loaded, export), namespace)
    except ConfigError:
        if namespace:
            return ExportKey(namespace, export.name)
        if len(namespaces) == 1:
            return ExportKey(namespaces[0], export.name)
        raise
    if reading and key.namespace not in namespaces and UNCLAIMED in namespaces:
        return ExportKey(UNCLAIMED, export.name)
    return key


def key_in_store(loaded: LoadedConfig, store: StateStore, name: str, *, reading: bool = True) -> ExportKey:
    """The state key of export ``name`` among the namespaces ``store`` holds (see :func:`state_key`)."""
    export = loaded.export(name)
    return state_key(loaded, export, store.namespaces_of(export.name), reading=reading)


def _meta_columns(export: ExportConfig) -> MetaColumns:
    m = export.meta_columns
    if m is None:
        return MetaColumns()
    return MetaColumns(m.exported_at, tuple(m.row_hash) if isinstance(m.row_hash, list) else m.row_hash)


def _quality(export: ExportConfig) -> QualitySpec | None:
    q = export.quality
    if q is None:
        return None
    return QualitySpec(
        row_count_min=q.row_count_min,
        row_count_max=q.row_count_max,
        null_ratio_max=tuple(q.null_ratio_max.items()),
        unique_columns=tuple(q.unique_columns),
        unique_max_entries=q.unique_max_entries or DEFAULT_UNIQUE_MAX_ENTRIES,
    )


def _parquet_layout(export: ExportConfig) -> ParquetLayout:
    p = export.parquet
    if p is None:
        return ParquetLayout()
    group_bytes = int(p.target_row_group_mb * MIB) if p.target_row_group_mb else None
    if p.row_group_strategy == "fixed_memory" and group_bytes is None:
        group_bytes = 128 * MIB
    if p.row_group_strategy == "fixed_rows":
        group_bytes = 1024 * MIB  # the rows decide; a gigabyte of Arrow data is the safety bound
    if p.max_row_group_mb:
        from rivet.output.parquet import ROW_GROUP_BYTES

        group_bytes = min(group_bytes or ROW_GROUP_BYTES, int(p.max_row_group_mb * MIB))
    return ParquetLayout(
        row_group_bytes=group_bytes,
        row_group_rows=p.row_group_rows,
        split_between_workers=p.row_group_strategy == "auto",
        data_page_bytes=p.data_page_size_kb * 1024 if p.data_page_size_kb else None,
        statistics=p.statistics,
        dictionary=None if p.dictionary == "auto" else bool(p.dictionary),
        types=NativeTypes(uuid=p.uuid == "native", json=p.json_ == "native"),
    )
