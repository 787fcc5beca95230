"""The rivet.yaml schema as pydantic models: unknown keys are errors, every rule names its key."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from rivet.config.blocks import (
    DefaultsConfig,
    ExecutorConfig,
    FreshnessConfig,
    IcebergConfig,
    MetaColumnsConfig,
    NotificationsConfig,
    ParquetConfig,
    QualityConfig,
    StateConfig,
    TelemetryConfig,
)
from rivet.config.changes import CdcConfig
from rivet.config.common import (
    DECIMAL_OVERRIDE,
    NAME_PATTERN,
    OVERRIDE_TYPES,
    PARTITION_PLACEHOLDER,
    TABLE_FOLDER_PATTERN,
    UNSUPPORTED_EXPORT_KEYS,
    Bool,
    PositiveInt,
    StrictModel,
    TuningConfig,
    _reject_misplaced_tuning,
    _reject_unsupported,
)
from rivet.config.connection import DestinationConfig, SourceConfig
from rivet.config.sizes import parse_size

UNSUPPORTED_TOP_KEYS: dict[str, str] = {
    "load": "rivet writes files; load them with your warehouse's own loader (bq load, COPY INTO, ...) "
    "from the manifest's parts",
}
# Sources of the original tool's later versions that rivet does not read.
OTHER_SOURCES = {"mssql": "SQL Server", "sqlserver": "SQL Server", "mongo": "MongoDB", "mongodb": "MongoDB",
                 "oracle": "Oracle"}  # fmt: skip


class ExportConfig(StrictModel):
    """One entry of ``exports``."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    query: str | None = None
    query_file: str | None = None
    table: str | None = None
    # mode: cdc: several tables' changes through one slot or binlog connection, each to <destination>/<table>/.
    tables: list[str] | None = None
    mode: Literal["full", "incremental", "chunked", "time_window", "cdc"] = "full"
    # delta, iceberg: Parquet parts committed to a table format's log or catalog, one commit per run.
    format: Literal["parquet", "csv", "delta", "iceberg"] = "parquet"
    iceberg: IcebergConfig | None = None
    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] | None = None
    compression_level: int | None = None
    compression_profile: Literal["none", "fast", "balanced", "compact"] | None = None
    max_file_size: str | int | None = None
    destination: str | DestinationConfig
    columns: dict[str, str] = Field(default_factory=dict)
    tuning: TuningConfig | None = None
    # How old its last published run may be before rivet check --freshness warns or fails.
    freshness: FreshnessConfig | None = None
    # incremental
    cursor_column: str | None = None
    incremental_cursor_mode: Literal["single_column", "coalesce"] | None = None
    cursor_fallback_column: str | None = None
    # chunked
    chunk_column: str | None = None
    # Keyset chunks: ranges of a unique, indexed key of one or more columns (text, uuid, integers).
    chunk_by_key: (
        Annotated[str, Field(min_length=1)] | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    ) | None = None
    # With chunk_by_key: each run reads only the keys after the highest one the last run published
    # (append-only tables whose new rows get higher keys).
    keyset_incremental: Bool | None = None
    chunk_size: PositiveInt | None = None
    chunk_count: PositiveInt | None = None
    chunk_by_days: PositiveInt | None = None
    chunk_dense: Bool | None = None
    # estimate (default): boundaries from statistics and index dives; count: read the key first
    chunk_strategy: Literal["estimate", "count"] | None = None
    parallel: PositiveInt | None = None
    chunk_checkpoint: Bool | None = None
    # With chunk_checkpoint: a worker publishes its part at a chunk boundary once it has held its
    # chunks this long, so an interrupted run keeps all but this much work per worker.
    checkpoint_every_s: Annotated[float, Field(ge=0)] = 30.0
    chunk_max_attempts: PositiveInt | None = None
    # time_window
    time_column: str | None = None
    time_column_type: Literal["timestamp", "unix"] | None = None
    days_window: PositiveInt | None = None
    # cdc: the log anchor (slot, replica id) and the initial snapshot
    cdc: CdcConfig | None = None
    # merge (format: delta, mode: cdc): the table holds the source's rows as they are now, by key
    write: Literal["append", "merge"] = "append"
    merge_keys: list[Annotated[str, Field(min_length=1)]] | None = None
    # parallel reads of one export (chunked, or full on a table) under one snapshot
    snapshot: Literal["consistent"] | None = None
    # advisory scheduling hints (plan/apply)
    wave: PositiveInt | None = None
    parallel_safe: Bool | None = None
    source_group: Annotated[str, Field(min_length=1)] | None = None
    reconcile_required: Bool = False
    # full and chunked runs replace the parts of the run before; keep them on disk instead
    keep_superseded_parts: Bool = False
    meta_columns: MetaColumnsConfig | None = None
    # a run that reads no rows publishes nothing and leaves the destination as it was
    skip_empty: Bool = False
    quality: QualityConfig | None = None
    parquet: ParquetConfig | None = None
    # the output's columns against the last published ones, before any row is read
    # evolve (delta, iceberg): appending runs add new columns to the table
    on_schema_drift: Literal["warn", "continue", "fail", "evolve"] = "warn"
    # warn when a text/binary value is this many times wider than any published before (0: off)
    shape_drift_warn_factor: Annotated[float, Field(ge=0)] = 2.0
    # Hive-style col=value/ folders; date and timestamp columns bucketed by partition_granularity (day)
    partition_by: Annotated[str, Field(min_length=1)] | list[Annotated[str, Field(min_length=1)]] | None = None
    partition_granularity: Literal["year", "month", "day", "hour"] | None = None

    @property
    def partition_columns(self) -> tuple[str, ...]:
        """The partition_by columns, in folder order."""
        by = self.partition_by
        return () if by is None else (by,) if isinstance(by, str) else tuple(by)

    @property
    def writes_to_stdout(self) -> bool:
        """Whether the export streams its one file to standard output."""
        return isinstance(self.destination, DestinationConfig) and self.destination.type == "stdout"

    @model_validator(mode="before")
    @classmethod
    def _tuning_placement(cls, data: Any) -> Any:
        return _reject_misplaced_tuning(_reject_unsupported(data, UNSUPPORTED_EXPORT_KEYS), "exports[].tuning")

    @field_validator("max_file_size")
    @classmethod
    def _size(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            parse_size(v)
        return v

    @field_validator("columns")
    @classmethod
    def _overrides(cls, v: dict[str, str]) -> dict[str, str]:
        for column, type_name in v.items():
            t = str(type_name).strip().lower()
            match = DECIMAL_OVERRIDE.match(t)
            if match:
                p, s = int(match.group(1)), int(match.group(2))
                if not 1 <= p <= 76 or s > p:
                    raise ValueError(f"{column}: decimal({p},{s}) needs 1 <= precision <= 76 and scale <= precision")
            elif t not in OVERRIDE_TYPES:
                raise ValueError(
                    f"{column}: unknown type '{type_name}'; use decimal(p,s) or one of " + ", ".join(OVERRIDE_TYPES)
                )
        return v

    @model_validator(mode="after")
    def _rules(self) -> ExportConfig:
        sources = [k for k in ("query", "query_file", "table", "tables") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError("specify exactly one of query, query_file, table or tables")
        if self.tables is not None and self.mode != "cdc":
            raise ValueError(
                "tables: reads several tables' changes through one slot or binlog connection (mode: cdc); for "
                f"mode: {self.mode} give each table its own export (table: schema.name)"
            )
        if self.query_file is not None:
            p = Path(self.query_file)
            if p.is_absolute() or ".." in p.parts:
                raise ValueError("query_file must be a relative path inside the config directory (no '..')")
        self._compression_rules()
        self._mode_rules()
        self._stdout_rules()
        self._partition_rules()
        self._table_format_rules()
        self._merge_rules()
        return self

    def _merge_rules(self) -> None:
        if self.write != "merge":
            if self.merge_keys is not None:
                raise ValueError("merge_keys requires write: merge")
            return
        if self.format not in ("delta", "iceberg"):
            raise ValueError(
                f"write: merge needs format: delta or iceberg (a table rows can be merged into), not {self.format}"
            )
        if self.mode not in ("cdc", "incremental"):
            raise ValueError(f"write: merge applies to mode: cdc and incremental, not {self.mode}")
        if self.mode == "incremental" and self.table is None and self.merge_keys is None:
            raise ValueError("write: merge of a query needs merge_keys (a table's primary key is found by itself)")
        if self.meta_columns is not None or self.partition_by is not None:
            raise ValueError("meta_columns and partition_by do not apply to write: merge")
        if self.merge_keys is not None and len(set(self.merge_keys)) != len(self.merge_keys):
            raise ValueError("merge_keys names a column twice")

    def _table_format_rules(self) -> None:
        if self.iceberg is not None and self.format != "iceberg":
            raise ValueError("iceberg: applies to format: iceberg")
        if self.format not in ("delta", "iceberg"):
            if self.on_schema_drift == "evolve":
                raise ValueError(
                    "on_schema_drift: evolve needs format: delta or iceberg, whose tables can add a column; "
                    "plain files of two schemas cannot share a folder"
                )
            return
        if self.writes_to_stdout:
            raise ValueError(f"format: {self.format} needs a folder (local or object storage), not stdout")
        if self.format == "iceberg" and self.partition_by is not None and self.parquet and not self.parquet.statistics:
            raise ValueError(
                "format: iceberg with partition_by needs parquet.statistics: each part's partition value is "
                "read from them"
            )

    def _partition_rules(self) -> None:
        columns = self.partition_columns
        if self.partition_by is not None and not columns:
            raise ValueError("partition_by needs at least one column")
        if len(set(columns)) != len(columns):
            raise ValueError("partition_by names a column twice")
        if self.partition_granularity is not None and not columns:
            raise ValueError("partition_granularity requires partition_by")
        if columns and self.writes_to_stdout:
            raise ValueError("a stdout destination takes one stream: partition_by does not apply")
        dest = self.destination
        places = [dest] if isinstance(dest, str) else [dest.url, dest.path, dest.prefix]
        for place in filter(None, places):
            if PARTITION_PLACEHOLDER not in place:
                continue
            if not columns:
                raise ValueError(f"destination {place}: {PARTITION_PLACEHOLDER} needs partition_by")
            if not re.search(r"(^|/)\{partition\}/?$", place):
                raise ValueError(
                    f"destination {place}: {PARTITION_PLACEHOLDER} must be the last folder of the path "
                    "(the partition folders go there)"
                )

    def _compression_rules(self) -> None:
        if self.compression_profile is not None and (
            self.compression is not None or self.compression_level is not None
        ):
            # The original tool let the profile win; its configs keep working, with a warning.
            logging.getLogger("rivet").warning(
                "export %s: compression_profile %s replaces compression and compression_level; remove those",
                self.name,
                self.compression_profile,
            )
        if self.format == "csv" and self.parquet is not None:
            raise ValueError("the parquet: block applies to format: parquet")
        chosen = {"uuid": self.parquet.uuid, "json": self.parquet.json_} if self.parquet is not None else {}
        native = [k for k, v in chosen.items() if v == "native"]
        if native and self.format != "parquet":
            raise ValueError(
                f"parquet: {{{native[0]}: native}} applies to format: parquet; a {self.format} table keeps "
                f"{native[0]} values as text"
            )
        if self.format == "csv" and self.compression in ("snappy", "lz4"):
            raise ValueError(f"csv output supports compression gzip, zstd or none, not {self.compression}")
        level = self.compression_level
        if level is not None:
            codec = self.compression or "zstd"
            bounds = {"zstd": (1, 22), "gzip": (1, 9)}
            if codec not in bounds:
                raise ValueError(f"compression_level applies only to zstd and gzip, not {codec}")
            lo, hi = bounds[codec]
            if not lo <= level <= hi:
                raise ValueError(f"compression_level for {codec} must be between {lo} and {hi}, got {level}")

    def _stdout_rules(self) -> None:
        if not self.writes_to_stdout:
            return
        if self.mode == "chunked" or (self.parallel or 1) > 1:
            raise ValueError("a stdout destination takes one stream: not mode chunked or parallel")
        if self.max_file_size is not None:
            raise ValueError("a stdout destination is one file: max_file_size does not apply")

    @property
    def keyset_columns(self) -> tuple[str, ...]:
        """The chunk_by_key columns, in key order (empty: no keyset chunks)."""
        by = self.chunk_by_key
        return () if by is None else (by,) if isinstance(by, str) else tuple(by)

    def _keyset_rules(self) -> None:
        keys = self.keyset_columns
        if len(set(keys)) != len(keys):
            raise ValueError(f"chunk_by_key names a column twice: {list(keys)}")
        clash = [
            k
            for k in ("chunk_column", "chunk_by_days", "chunk_dense", "chunk_strategy")
            if getattr(self, k) not in (None, False)
        ]
        if clash:
            raise ValueError(
                f"chunk_by_key excludes {', '.join(clash)}: keyset chunks are cut at exact row counts "
                "(chunk_size or chunk_count) on the key the server orders"
            )

    def _mode_rules(self) -> None:
        m = self.mode
        if m == "incremental":
            if not self.cursor_column:
                raise ValueError("incremental mode requires cursor_column")
            coalesce = self.incremental_cursor_mode == "coalesce"
            if coalesce and not self.cursor_fallback_column:
                raise ValueError("incremental_cursor_mode: coalesce requires cursor_fallback_column")
            if not coalesce and self.cursor_fallback_column:
                raise ValueError("cursor_fallback_column requires incremental_cursor_mode: coalesce")
        if m == "chunked":
            if not self.chunk_column and not self.chunk_by_key and self.table is None:
                raise ValueError(
                    "chunked mode requires chunk_column or chunk_by_key (or table: to use its primary key)"
                )
            if self.chunk_by_key is not None:
                self._keyset_rules()
            elif self.keyset_incremental:
                raise ValueError(
                    "keyset_incremental requires chunk_by_key: the unique key whose highest published value "
                    "the next run reads after"
                )
            if self.chunk_count is not None and (self.chunk_dense or self.chunk_by_days is not None):
                raise ValueError("chunk_count excludes chunk_dense and chunk_by_days")
            if self.chunk_by_days is not None and self.chunk_dense:
                raise ValueError("chunk_by_days excludes chunk_dense")
        if m == "cdc":
            self._change_rules()
        elif self.cdc is not None:
            raise ValueError(f"cdc: requires mode: cdc (this export has mode: {m})")
        if m == "time_window" and (self.time_column is None or self.days_window is None):
            raise ValueError("time_window mode requires time_column and days_window")
        if m in ("incremental", "time_window") and (self.parallel or 1) > 1:
            raise ValueError(f"parallel applies to mode: chunked and mode: full, not {m}")
        if m == "full" and (self.parallel or 1) > 1 and self.table is None:
            raise ValueError(
                "parallel with mode: full splits a table by its physical pages and needs table:; "
                "for a query, use mode: chunked with a chunk_column"
            )
        owned = {
            "incremental": ("cursor_column", "incremental_cursor_mode", "cursor_fallback_column"),
            "chunked": (
                "chunk_column",
                "chunk_by_key",
                "keyset_incremental",
                "chunk_size",
                "chunk_count",
                "chunk_by_days",
                "chunk_dense",
                "chunk_strategy",
                "chunk_checkpoint",
                "chunk_max_attempts",
            ),
            "time_window": ("time_column", "time_column_type", "days_window"),
        }
        for mode, keys in owned.items():
            if mode == m:
                continue
            stray = [k for k in keys if getattr(self, k) is not None]
            if stray:
                raise ValueError(f"{', '.join(stray)} require(s) mode: {mode} (this export has mode: {m})")

    def _change_rules(self) -> None:
        if self.table is None and self.tables is None:
            raise ValueError(
                "mode: cdc captures the changes of one table (table: schema.name) or of several (tables: [...]), "
                "not of a query"
            )
        if self.tables is not None:
            self._tables_rules()
        if (self.parallel or 1) > 1:
            raise ValueError("parallel does not apply to mode: cdc: one connection reads the log in commit order")
        if self.format in ("delta", "iceberg") and self.write != "merge":
            raise ValueError(
                f"format: {self.format} with mode: cdc takes write: merge (the table as it is now); for the change "
                "rows themselves write format: parquet"
            )
        if self.partition_by is not None:
            raise ValueError("partition_by does not apply to mode: cdc: change parts follow the log, not the rows")
        if self.writes_to_stdout:
            raise ValueError("mode: cdc needs a folder for its snapshot and change parts, not stdout")

    def _tables_rules(self) -> None:
        assert self.tables is not None
        if not self.tables:
            raise ValueError("tables: lists no table")
        odd = [t for t in self.tables if not re.match(TABLE_FOLDER_PATTERN, t)]
        if odd:
            raise ValueError(
                f"tables: {', '.join(map(repr, odd))} is not a plain name or schema.name (letters, digits, _, $ and "
                "-), which also names the table's folder; capture such a table in an export of its own (table:)"
            )
        twice = sorted({t for t in self.tables if self.tables.count(t) > 1})
        if twice:
            raise ValueError(f"tables: lists {', '.join(twice)} more than once")
        if self.write == "merge":
            raise ValueError(
                "write: merge takes one table per export: give each table its own export (table: schema.name)"
            )


class RivetConfig(StrictModel):
    """A whole rivet.yaml."""

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        source = data.get("source") if isinstance(data, dict) else None
        kind = source.get("type") if isinstance(source, dict) else None
        if isinstance(kind, str) and kind.lower() in OTHER_SOURCES:
            raise ValueError(
                f"source.type: {kind}: {OTHER_SOURCES[kind.lower()]} is not a source rivet reads (PostgreSQL, "
                "MySQL/MariaDB and SQLite are); export it with its own tools, or from a replica in one of those"
            )
        return _reject_unsupported(data, UNSUPPORTED_TOP_KEYS)

    source: SourceConfig
    exports: list[ExportConfig]
    parallel_exports: Bool = False
    parallel_export_processes: Bool = False
    notifications: NotificationsConfig | None = None
    telemetry: TelemetryConfig | None = None
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)

    def freshness_of(self, export: ExportConfig) -> FreshnessConfig | None:
        """The export's freshness limits: its own, else ``defaults.freshness``."""
        return export.freshness or self.defaults.freshness

    @model_validator(mode="after")
    def _exports(self) -> RivetConfig:
        if self.parallel_exports and self.parallel_export_processes:
            raise ValueError("set parallel_exports or parallel_export_processes, not both")
        if not self.exports:
            raise ValueError("at least one export must be defined under exports:")
        to_stdout = [e.name for e in self.exports if e.writes_to_stdout]
        if len(to_stdout) > 1:
            raise ValueError(f"only one export may write to stdout (got {', '.join(to_stdout)})")
        seen: set[str] = set()
        for e in self.exports:
            if e.name in seen:
                raise ValueError(f"duplicate export name '{e.name}' (state is kept per name)")
            seen.add(e.name)
        # Each table of a tables: export keeps its state under <export>.<table>, a name no export may take.
        for e in self.exports:
            taken = sorted(seen & {f"{e.name}.{t}" for t in e.tables or ()})
            if taken:
                raise ValueError(
                    f"export name '{taken[0]}' is where export '{e.name}' keeps the state of one of its tables: "
                    "rename that export"
                )
        return self
