"""The rivet.yaml schema as pydantic models: unknown keys are errors, every rule names its key."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from rivet.config.sizes import parse_size
from rivet.core.redact import HIDDEN, redact_url

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# A state namespace a user names (derived ones start with "auto-").
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# An Iceberg namespace or table: no dot, which would nest it.
ICEBERG_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"

# Keys that belong in a ``tuning:`` block; found elsewhere they get a pointed message.
TUNING_KEYS = (
    "profile",
    "batch_size",
    "batch_size_memory_mb",
    "throttle_ms",
    "statement_timeout_s",
    "lock_timeout_s",
    "max_retries",
    "retry_backoff_ms",
    "memory_threshold_mb",
    "max_batch_memory_mb",
    "on_batch_memory_exceeded",
)

# ``columns:`` override types. PostgreSQL takes decimal(p,s) and text; SQLite all of them.
OVERRIDE_TYPES = (
    "text",
    "string",
    "int8",
    "bigint",
    "integer",
    "float8",
    "double",
    "real",
    "bool",
    "boolean",
    "date",
    "timestamp",
    "datetime",
    "blob",
    "binary",
    "bytea",
)
DECIMAL_OVERRIDE = re.compile(r"^(?:decimal|numeric)\(\s*(\d+)\s*,\s*(\d+)\s*\)$", re.IGNORECASE)

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


# In a destination path, where the partition folders of partition_by go (a path ending there).
PARTITION_PLACEHOLDER = "{partition}"


def _yaml12_bool(value: Any) -> Any:
    """Only ``true`` and ``false`` (YAML 1.2, and a ``${VAR}`` that expands to one): never yes, on, 1."""
    if isinstance(value, bool):
        return value
    if value in ("true", "True", "TRUE"):
        return True
    if value in ("false", "False", "FALSE"):
        return False
    raise ValueError(f"expected true or false, got {value!r} (booleans are YAML 1.2's: yes, on and 1 are not)")


Bool = Annotated[bool, BeforeValidator(_yaml12_bool)]


class StrictModel(BaseModel):
    """Frozen, and rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Keys of the original tool's later versions that rivet does not take, with what to use instead.
UNSUPPORTED_EXPORT_KEYS = {
    "chunk_by_key": "keyset chunking is not supported: use chunk_column with an integer, date or timestamp "
    "column, or table: with parallel: N (page ranges on PostgreSQL)",
    "chunk_size_memory_mb": "use chunk_size (rows); chunks share parts, which max_file_size sizes",
    "tables": "use one export per table (table: schema.name)",
    "verify": "use rivet run --validate (every new part read back before the commit) or rivet validate",
    "cdc": "change data capture is not supported: use mode: incremental with a cursor_column",
    "keyset_incremental": "use mode: incremental with a cursor_column",
    "load": "rivet writes files; load them with your warehouse's own loader",
    "target": "rivet writes files; load them with your warehouse's own loader",
    "split": "use max_file_size to rotate parts",
}
UNSUPPORTED_TOP_KEYS: dict[str, str] = {}


def _reject_unsupported(data: Any, keys: dict[str, str]) -> Any:
    """Refuse every key of ``keys`` in ``data`` at once, each with what to use instead."""
    if isinstance(data, dict):
        found = [f"{key}: {advice}" for key, advice in keys.items() if key in data]
        if found:
            raise ValueError("\n  - ".join(found))
    return data


def _reject_misplaced_tuning(data: Any, where: str) -> Any:
    if isinstance(data, dict):
        misplaced = [k for k in TUNING_KEYS if k in data]
        if misplaced:
            keys = ", ".join(misplaced)
            example = "\n".join(f"    {k}: {data[k]!r}" for k in misplaced)
            raise ValueError(f"{keys} must be nested under tuning: ({where}), for example\n  tuning:\n{example}")
    return data


class TuningConfig(StrictModel):
    """Source protection and batching; per-export values override the source's, key by key."""

    profile: Literal["fast", "balanced", "safe"] | None = None
    batch_size: PositiveInt | None = None
    batch_size_memory_mb: Annotated[float, Field(gt=0)] | None = None
    throttle_ms: NonNegativeInt | None = None
    statement_timeout_s: NonNegativeInt | None = None
    lock_timeout_s: NonNegativeInt | None = None
    max_retries: NonNegativeInt | None = None
    retry_backoff_ms: NonNegativeInt | None = None
    # the most memory one batch may hold; what to do with a single row above it
    max_batch_memory_mb: Annotated[float, Field(gt=0)] | None = None
    on_batch_memory_exceeded: Literal["warn", "fail", "auto_shrink"] | None = None
    # chunked: workers start no new chunk while the process's resident memory is above this
    memory_threshold_mb: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _one_batch_bound(self) -> TuningConfig:
        if self.batch_size is not None and self.batch_size_memory_mb is not None:
            raise ValueError("set batch_size or batch_size_memory_mb, not both")
        return self


class TlsConfig(StrictModel):
    """``source.tls``: encryption and certificate checks."""

    mode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "verify-full"
    ca_file: str | None = None
    accept_invalid_certs: Bool = False
    accept_invalid_hostnames: Bool = False
    # Send a password in clear text, or as a replayable MD5 hash, over a connection whose
    # server is not proven by a verified certificate.
    allow_unverified_password: Bool = False
    # SCRAM channel binding (PostgreSQL), libpq's names.
    channel_binding: Literal["prefer", "require", "disable"] | None = None


class SourceConfig(StrictModel):
    """``source``: where rows come from."""

    type: Literal["postgres", "mysql", "sqlite"]
    url: str | None = None
    url_env: str | None = None
    url_file: str | None = None
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    user: str | None = None
    database: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    path: str | None = None
    tls: TlsConfig | None = None
    tuning: TuningConfig | None = None
    # The longest the server may send nothing while rivet waits (default: statement timeout + 30 s).
    read_timeout_s: Annotated[float, Field(gt=0)] | None = None
    # Which reader scans: rivet's own, connectorx, or connectorx only where it is exact.
    engine: Literal["auto", "native", "connectorx"] = "native"
    # A label for people (production, replica, staging); shown by `rivet plan`, changes nothing.
    environment: Annotated[str, Field(min_length=1)] | None = None

    def __repr_args__(self) -> Any:
        # A URL may hold a password: reprs (and tracebacks) show it redacted.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" and isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _tuning_placement(cls, data: Any) -> Any:
        return _reject_misplaced_tuning(data, "source.tuning")

    @model_validator(mode="after")
    def _connection_style(self) -> SourceConfig:
        urls = [k for k in ("url", "url_env", "url_file") if getattr(self, k) is not None]
        structured = [k for k in ("host", "user", "database", "port") if getattr(self, k) is not None]
        if len(urls) > 1:
            raise ValueError("specify exactly one of url, url_env or url_file")
        if self.password is not None and self.password_env is not None:
            raise ValueError("set password or password_env, not both")
        if self.type == "sqlite":
            if self.tls is not None:
                raise ValueError("tls does not apply to a sqlite source")
            if structured or self.password or self.password_env:
                raise ValueError("a sqlite source takes path (or url: sqlite:///file.db), not host/user/database")
            if bool(urls) == (self.path is not None):
                raise ValueError("a sqlite source needs exactly one of path, url, url_env or url_file")
            return self
        if self.path is not None:
            raise ValueError("path applies only to a sqlite source; use url or host/user/database")
        if urls and (structured or self.password or self.password_env):
            raise ValueError(
                "use either a URL (url, url_env, url_file) or structured fields "
                "(host, port, user, database, password), not both"
            )
        if not urls:
            if not structured:
                raise ValueError("no connection given: set url, url_env or url_file, or host, user and database")
            for required in ("host", "user", "database"):
                if getattr(self, required) is None:
                    raise ValueError(f"structured config requires '{required}'")
        return self


class DestinationConfig(StrictModel):
    """``destination``: where files go. ``{date}``, ``{export}`` and ``{table}`` expand in paths."""

    type: Literal["local", "s3", "gcs", "azure", "memory", "stdout"] | None = None
    url: str | None = None
    path: str | None = None
    bucket: str | None = None
    container: str | None = None
    prefix: str | None = None
    region: str | None = None
    endpoint: str | None = None
    access_key_env: str | None = None
    secret_key_env: str | None = None
    session_token_env: str | None = None
    aws_profile: str | None = None
    allow_anonymous: Bool = False
    credentials_file: str | None = None
    account_name: str | None = None
    account_key_env: str | None = None
    sas_token_env: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def __repr_args__(self) -> Any:
        # Storage options carry keys and tokens; a URL may carry a signature.
        for name, value in super().__repr_args__():
            if name == "storage_options" and value:
                yield name, dict.fromkeys(value, HIDDEN)
            elif name == "url" and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    @model_validator(mode="after")
    def _shape(self) -> DestinationConfig:
        if self.url is not None:
            if self.type is not None or self.path is not None or self.bucket is not None:
                raise ValueError("give url alone, or type with path/bucket, not both")
            return self
        kind = self.type or ("local" if self.path is not None else None)
        if kind == "stdout":
            extra = sorted(k for k in self.model_fields_set if k != "type")
            if extra:
                raise ValueError(f"a stdout destination takes no other keys (got {', '.join(extra)})")
            return self
        if kind is None:
            raise ValueError("set url, path, or type with its keys (e.g. type: s3, bucket: ...)")
        if kind in ("s3", "gcs") and not self.bucket:
            raise ValueError(f"a {kind} destination requires 'bucket'")
        if kind == "azure" and not (self.container or self.bucket):
            raise ValueError("an azure destination requires 'container' (or 'bucket', as the original tool calls it)")
        if kind == "azure" and self.container and self.bucket and self.container != self.bucket:
            raise ValueError("container and bucket name the same azure container; give one of them")
        if self.sas_token_env and kind != "azure":
            raise ValueError("sas_token_env applies to an azure destination")
        if self.sas_token_env and self.account_key_env:
            raise ValueError("set account_key_env or sas_token_env, not both")
        if (self.access_key_env is None) != (self.secret_key_env is None):
            raise ValueError("set both access_key_env and secret_key_env, or neither")
        if self.allow_anonymous and self.credentials_file:
            raise ValueError("allow_anonymous and credentials_file exclude each other")
        if self.credentials_file and not Path(self.credentials_file).is_file():
            raise ValueError(f"credentials_file '{self.credentials_file}' does not exist")
        return self


class MetaColumnsConfig(StrictModel):
    """``meta_columns``: columns rivet adds to every row it writes."""

    exported_at: Bool = False
    row_hash: Bool = False

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "run_id" in data:
                raise ValueError(
                    "meta_columns.run_id is not supported: each part's run id is in the manifest "
                    "(manifest.json and _rivet/runs/<run_id>.json); remove the key"
                )
            if "source_file" in data:
                raise ValueError(
                    "meta_columns.source_file is not supported: the manifest lists every part with its rows; "
                    "remove the key"
                )
        return data


class QualityConfig(StrictModel):
    """``quality``: gates on the rows written, checked before anything is published."""

    row_count_min: NonNegativeInt | None = None
    row_count_max: NonNegativeInt | None = None
    null_ratio_max: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    unique_columns: list[str] = Field(default_factory=list)
    unique_max_entries: PositiveInt | None = None

    @model_validator(mode="after")
    def _bounds(self) -> QualityConfig:
        low, high = self.row_count_min, self.row_count_max
        if low is not None and high is not None and low > high:
            raise ValueError(f"row_count_min ({low}) is above row_count_max ({high})")
        return self


class ParquetConfig(StrictModel):
    """``parquet``: how Parquet parts are laid out."""

    # auto: about target_row_group_mb of Arrow data per row group, shared by parallel workers;
    # fixed_memory: exactly that per writer; fixed_rows: row_group_rows rows per row group.
    row_group_strategy: Literal["auto", "fixed_rows", "fixed_memory"] = "auto"
    row_group_rows: PositiveInt | None = None
    target_row_group_mb: Annotated[float, Field(gt=0, le=1024)] | None = None
    max_row_group_mb: Annotated[float, Field(gt=0, le=1024)] | None = None
    data_page_size_kb: Annotated[int, Field(ge=4, le=65536)] | None = None
    statistics: Bool = True
    # auto: text columns whose first values repeat; true: every column; false: none
    dictionary: Literal["auto"] | Bool = "auto"

    @model_validator(mode="after")
    def _strategy(self) -> ParquetConfig:
        fixed_rows = self.row_group_strategy == "fixed_rows"
        if fixed_rows and self.row_group_rows is None:
            raise ValueError("row_group_strategy: fixed_rows needs row_group_rows")
        if not fixed_rows and self.row_group_rows is not None:
            raise ValueError("row_group_rows applies to row_group_strategy: fixed_rows")
        if fixed_rows and self.target_row_group_mb is not None:
            raise ValueError("target_row_group_mb applies to row_group_strategy auto or fixed_memory")
        return self


class IcebergConfig(StrictModel):
    """``iceberg``: the catalog an Iceberg export's table is registered in."""

    # sqlite:///path.db or postgresql://... (a SQL catalog), or http(s)://... (a REST catalog);
    # unset: a SQLite catalog, .rivet_iceberg.db beside the config (and its state).
    catalog_url: str | None = None
    namespace: Annotated[str, Field(pattern=ICEBERG_NAME_PATTERN)] = "rivet"
    # The table's name in the namespace; unset: the export's name (a dot in it becomes _).
    table: Annotated[str, Field(pattern=ICEBERG_NAME_PATTERN)] | None = None
    # More catalog properties, as pyiceberg names them (a REST catalog's token, warehouse, ...).
    catalog_properties: dict[str, str] = Field(default_factory=dict)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "catalog_properties" and value:
                yield name, dict.fromkeys(value, HIDDEN)
            elif name == "catalog_url" and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    @field_validator("catalog_url")
    @classmethod
    def _catalog_kind(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite:///", "postgresql://", "http://", "https://")):
            raise ValueError("catalog_url is sqlite:///<file>, postgresql://... or an http(s):// REST catalog")
        return v


class ExportConfig(StrictModel):
    """One entry of ``exports``."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    query: str | None = None
    query_file: str | None = None
    table: str | None = None
    mode: Literal["full", "incremental", "chunked", "time_window"] = "full"
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
    # incremental
    cursor_column: str | None = None
    incremental_cursor_mode: Literal["single_column", "coalesce"] | None = None
    cursor_fallback_column: str | None = None
    # chunked
    chunk_column: str | None = None
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
        sources = [k for k in ("query", "query_file", "table") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError("specify exactly one of query, query_file or table")
        if self.query_file is not None:
            p = Path(self.query_file)
            if p.is_absolute() or ".." in p.parts:
                raise ValueError("query_file must be a relative path inside the config directory (no '..')")
        self._compression_rules()
        self._mode_rules()
        self._stdout_rules()
        self._partition_rules()
        self._table_format_rules()
        return self

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
            if not self.chunk_column and self.table is None:
                raise ValueError("chunked mode requires chunk_column (or table: to use its primary key)")
            if self.chunk_count is not None and (self.chunk_dense or self.chunk_by_days is not None):
                raise ValueError("chunk_count excludes chunk_dense and chunk_by_days")
            if self.chunk_by_days is not None and self.chunk_dense:
                raise ValueError("chunk_by_days excludes chunk_dense")
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


# What an export's outcome can notify about; schema_change is the original tool's name for schema_drift.
NotifyOn = Literal["failure", "success", "schema_drift", "schema_change", "quality", "degraded"]


def _failures_only() -> list[NotifyOn]:
    return ["failure"]


class NotificationTarget(StrictModel):
    """One place to notify: its URL (or the variable holding it) and the outcomes that notify."""

    on: list[NotifyOn] = Field(default_factory=_failures_only, min_length=1)

    def _one_url(self, url: SecretStr | None, url_env: str | None, key: str) -> None:
        if (url is None) == (url_env is None):
            raise ValueError(f"give exactly one of {key} or {key}_env")


class SlackNotification(NotificationTarget):
    """``notifications.slack``: an incoming-webhook URL of Slack."""

    webhook_url: SecretStr | None = None
    webhook_url_env: str | None = None

    @model_validator(mode="after")
    def _url(self) -> SlackNotification:
        self._one_url(self.webhook_url, self.webhook_url_env, "webhook_url")
        return self


class WebhookNotification(NotificationTarget):
    """``notifications.webhook``: any HTTP endpoint that takes a JSON POST."""

    url: SecretStr | None = None
    url_env: str | None = None

    @model_validator(mode="after")
    def _url(self) -> WebhookNotification:
        self._one_url(self.url, self.url_env, "url")
        return self


class NotificationsConfig(StrictModel):
    """``notifications``: messages sent after a run about the exports whose outcome asks for one."""

    slack: SlackNotification | None = None
    webhook: WebhookNotification | None = None


class ExecutorConfig(StrictModel):
    """``executor``: where the chunks of chunked exports are read.

    ``local`` (the default): threads of this process. ``dask``: the workers of the Dask
    cluster whose scheduler is at ``address`` (``tcp://host:8786``); this process plans,
    keeps the state and publishes.
    """

    type: Literal["local", "dask"] = "local"
    address: str | None = None
    # Use a scheduler reached over plain tcp:// although the exports have credentials (anyone who
    # reaches it can run code on the workers, which hold them). tls:// needs no such consent.
    allow_plaintext: Bool = False

    @model_validator(mode="after")
    def _address(self) -> ExecutorConfig:
        if self.type == "dask" and not self.address:
            raise ValueError("executor: type dask needs the scheduler's address (address: tcp://host:8786)")
        return self


class StateConfig(StrictModel):
    """``state:``: where this config's exports keep their state in a shared state store."""

    # Rows of the state store belong to this namespace instead of one derived from each export's
    # source, table or query and destination: a config that moves (or whose URL changes) keeps its state.
    namespace: Annotated[str, Field(pattern=NAMESPACE_PATTERN)] | None = None


class RivetConfig(StrictModel):
    """A whole rivet.yaml."""

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _reject_unsupported(data, UNSUPPORTED_TOP_KEYS)

    source: SourceConfig
    exports: list[ExportConfig]
    parallel_exports: Bool = False
    parallel_export_processes: Bool = False
    notifications: NotificationsConfig | None = None
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    state: StateConfig = Field(default_factory=StateConfig)

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
        return self
