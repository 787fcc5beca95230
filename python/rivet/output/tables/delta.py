"""``format: delta``: the run's Parquet parts committed to a Delta Lake log, in one commit.

The parts are written and made visible as for Parquet output; Delta readers see only
the files the log lists, so a part is visible to them only once the run commits. The
commit makes the log list exactly the parts the manifest lists (what the run added,
and what it superseded removed) in one atomic transaction, after the state commit.
A kill between the two is repaired by the next run, whose commit lists the parts of
every committed run again; a commit with nothing to change is not made, so a run is
never committed twice.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

from rivet.errors import ConfigError, DestinationError
from rivet.output.partition import HIVE_DEFAULT_PARTITION
from rivet.output.tables.base import (
    Committed,
    LiveParts,
    TableFormat,
    nullable,
    reason,
    relative_name,
    s3_settings,
    secret_values,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.output.manifest import CommittedPart
    from rivet.output.partition import Partitioning
    from rivet.storage.destinations import Destination, DestinationSpec


def table_uri(spec: DestinationSpec) -> str:
    """The URI delta-rs opens: a local folder, ``s3://bucket/prefix`` or ``abfs://container/prefix``."""
    if spec.url.startswith(("s3://", "abfs://", "/")):
        return spec.url
    raise ConfigError(f"destination {spec.shown}: format: delta is written to local disk, S3 or Azure for now")


def storage_options(spec: DestinationSpec) -> dict[str, str]:
    """The destination's credentials and endpoint, as delta-rs names them."""
    if spec.url.startswith("abfs://"):
        return _azure_options(spec.storage_options)
    names = {
        "key": "AWS_ACCESS_KEY_ID",
        "secret": "AWS_SECRET_ACCESS_KEY",
        "token": "AWS_SESSION_TOKEN",
        "endpoint": "AWS_ENDPOINT_URL",
        "region": "AWS_REGION",
    }
    options = {names[name]: value for name, value in s3_settings(spec.storage_options).items()}
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    if spec.url.startswith("s3://"):
        # Commits are atomic by a conditional put of the next log entry (If-None-Match).
        options.setdefault("AWS_CONDITIONAL_PUT", "etag")
    return options


def _azure_options(given: dict[str, Any]) -> dict[str, str]:
    """The Azure settings adlfs takes (an account with a key or SAS, or a connection string), for delta-rs."""
    settings = {str(k): str(v) for k, v in given.items() if v}
    if connection := settings.pop("connection_string", None):
        fields = dict(item.split("=", 1) for item in connection.split(";") if "=" in item)
        renamed = {"AccountName": "account_name", "AccountKey": "account_key", "SharedAccessSignature": "sas_token"}
        settings |= {ours: fields[theirs] for theirs, ours in renamed.items() if theirs in fields}
        if endpoint := fields.get("BlobEndpoint"):
            settings["endpoint"] = endpoint
    names = {
        "account_name": "AZURE_STORAGE_ACCOUNT_NAME",
        "account_key": "AZURE_STORAGE_ACCOUNT_KEY",
        "sas_token": "AZURE_STORAGE_SAS_KEY",
        "endpoint": "AZURE_ENDPOINT",
    }
    options = {delta_name: settings[name] for name, delta_name in names.items() if name in settings}
    if options.get("AZURE_ENDPOINT", "").startswith("http://"):
        options["AZURE_ALLOW_HTTP"] = "true"
    return options


def check_partitioning(schema: pa.Schema, partitioning: Partitioning | None, export: str) -> None:
    """Refuse, before any row is read, a partition_by Delta cannot hold: each column's exact value."""
    if partitioning is None:
        return
    for name in partitioning.columns:
        key = partitioning.key(name, schema.field(name).type)
        if key != name:
            raise ConfigError(
                f"export '{export}': format: delta partitions by a column's exact value, and {name} would be "
                f"bucketed into {key}; partition by a column the query computes (CAST({name} AS date) AS {key}), "
                "or use format: iceberg, whose partitions take the bucket"
            )


def check_table(destination: Destination, partitioning: Partitioning | None) -> None:
    """Refuse, before a run commits, a table partitioned otherwise than the export."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        table = DeltaTable(table_uri(destination.spec), storage_options=storage_options(destination.spec))
    except TableNotFoundError:
        return
    except (DeltaError, OSError) as e:
        raise DestinationError(f"reading the Delta table {destination.spec.shown} failed: {reason(e)}") from e
    have = list(table.metadata().partition_columns)
    want = list(partitioning.columns) if partitioning else []
    if have != want:
        raise DestinationError(
            f"the Delta table at {destination.spec.shown} is partitioned by {have or 'nothing'}, this export by "
            f"{want or 'nothing'}; export to a new destination (or remove the table)"
        )


def partition_values(name: str) -> dict[str, str | None]:
    """A part's partition values, from its ``column=value/`` folders (``__HIVE_DEFAULT_PARTITION__``: NULL)."""
    values: dict[str, str | None] = {}
    for segment in name.split("/")[:-1]:
        key, _, value = segment.partition("=")
        values[unquote(key)] = None if value == HIVE_DEFAULT_PARTITION else unquote(value)
    return values


def commit_live_parts(
    destination: Destination,
    schema: pa.Schema,
    live: list[CommittedPart],
    summary: dict[str, str],
    *,
    append: bool,
    partitioning: Partitioning | None = None,
) -> Committed:
    """Make the Delta log list exactly ``live`` (no commit when it already does)."""
    try:
        from deltalake import CommitProperties, DeltaTable, Schema
        from deltalake.exceptions import DeltaError, TableNotFoundError
        from deltalake.transaction import AddAction, create_table_with_add_actions
    except ImportError:
        raise DeltaFormat().missing_library() from None
    from deltalake._internal import RemoveAction

    uri, options = table_uri(destination.spec), storage_options(destination.spec)
    now = int(time.time() * 1000)
    commit = CommitProperties(custom_metadata=summary)
    adds = {
        p.name: AddAction(p.name, p.bytes, partition_values(p.name), now, True, json.dumps({"numRecords": p.rows}))
        for p in live
    }
    partition_by = list(partitioning.columns) if partitioning else None
    # Every column nullable in the table: a later run may add one, and Delta adds only nullable columns.
    schema = nullable(schema)
    delta_schema = Schema.from_arrow(schema)
    try:
        try:
            table = DeltaTable(uri, storage_options=options)
        except TableNotFoundError:
            create_table_with_add_actions(
                uri,
                delta_schema,
                list(adds.values()),
                mode="error",
                partition_by=partition_by,
                storage_options=options,
                commit_properties=commit,
            )
            return Committed(0, set())
        listed = {relative_name(uri, f) for f in table.file_uris()}
        have, want = _column_types(table.schema()), _column_types(delta_schema)
        if have != want and not append:
            # A run that replaces every part replaces the columns with its own.
            table.create_write_transaction(
                list(adds.values()), "overwrite", schema, partition_by, commit_properties=commit
            )
            return Committed(_version_now(table), listed)
        if missing := [f for f in delta_schema.fields if f.name not in have]:
            # An appending run's new columns (on_schema_drift: evolve), in a commit of their own.
            table.alter.add_columns(missing, commit_properties=commit)
        changes: list[Any] = [a for name, a in adds.items() if name not in listed]
        changes += [RemoveAction(name, True, now) for name in sorted(listed - adds.keys())]
        if not changes:
            return Committed(int(table.version()), listed)
        table.create_write_transaction(changes, "append", schema, partition_by, commit_properties=commit)
        return Committed(_version_now(table), listed)
    except (DeltaError, OSError) as e:
        secrets = secret_values(options)
        raise DestinationError(
            f"committing to the Delta table {destination.spec.shown} failed: {reason(e, secrets)}"
        ) from e


def _column_types(schema: Any) -> dict[str, str]:
    """Each top-level column's Delta type (order and nullability aside)."""
    return {f.name: repr(f.type) for f in schema.fields}


def listed_parts(destination: Destination) -> set[str] | None:
    """The names of the parts the Delta log lists; None when there is no table."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    uri = table_uri(destination.spec)
    try:
        table = DeltaTable(uri, storage_options=storage_options(destination.spec))
    except TableNotFoundError:
        return None
    except (DeltaError, OSError) as e:
        raise DestinationError(f"reading the Delta table {destination.spec.shown} failed: {reason(e)}") from e
    return {relative_name(uri, f) for f in table.file_uris()}


def _version_now(table: Any) -> int:
    """The table's version after a commit through it (the object still shows the one it was read at)."""
    table.update_incremental()
    return int(table.version())


class DeltaFormat(TableFormat):
    """Delta Lake through delta-rs: partitions are a column's exact value; timestamps are UTC."""

    name: ClassVar[str] = "delta"
    label: ClassVar[str] = "Delta"
    modules: ClassVar[tuple[str, ...]] = ("deltalake",)
    extra: ClassVar[str] = "delta"
    merges: ClassVar[bool] = True

    def refused(self, t: pa.DataType, column: str) -> str | None:
        """The shared rules, and the types delta-rs refuses only when it commits."""
        import pyarrow as pa

        if (problem := super().refused(t, column)) is not None:
            return problem
        unsupported = pa.types.is_float16(t) or pa.types.is_duration(t) or pa.types.is_interval(t)
        if unsupported or pa.types.is_time(t):
            return f"{self.label} has no such type; cast it in the query (to text, say)"
        if pa.types.is_timestamp(t) and t.tz not in (None, "UTC"):
            return f"{self.label} keeps timestamps in UTC only"
        return None

    def check_partitioning(self, schema: pa.Schema, partitioning: Partitioning | None, export: str) -> None:
        """Each partition column's exact value (no buckets)."""
        check_partitioning(schema, partitioning, export)

    def map_schema(self, schema: pa.Schema) -> None:
        """delta-rs's mapping of Arrow types."""
        from deltalake import Schema

        Schema.from_arrow(schema)

    def location(self, spec: DestinationSpec) -> str:
        """The URI delta-rs opens."""
        return table_uri(spec)

    def check_table(self, destination: Destination, partitioning: Partitioning | None) -> None:
        """The Delta log's partition columns."""
        check_table(destination, partitioning)

    def commit(self, destination: Destination, parts: LiveParts) -> Committed:
        """One Delta commit (none when the log already lists the parts)."""
        return commit_live_parts(
            destination, parts.schema, parts.live, parts.summary, append=parts.append, partitioning=parts.partitioning
        )

    def listed_parts(self, destination: Destination) -> set[str] | None:
        """The parts the Delta log lists."""
        return listed_parts(destination)

    def open(self, spec: DestinationSpec, version: int | None) -> Any:
        """A ``deltalake.DeltaTable`` at ``version``."""
        from deltalake import DeltaTable

        return DeltaTable(table_uri(spec), version=version, storage_options=storage_options(spec))

    def read(self, spec: DestinationSpec, version: int | None) -> pa.Table:
        """The live parts at ``version``, as the log lists them."""
        return self.open(spec, version).to_pyarrow_table()

    def scan(self, spec: DestinationSpec, version: int | None) -> Any:
        """``polars.scan_delta``."""
        import polars as pl

        return pl.scan_delta(table_uri(spec), version=version, storage_options=storage_options(spec))

    def replace_rows(self, spec: DestinationSpec, rows: pa.RecordBatchReader, metadata: dict[str, str]) -> None:
        """An overwrite of the whole table."""
        from rivet.output.tables.delta_merge import replace_rows

        replace_rows(spec, rows, metadata)

    def merge_rows(
        self, spec: DestinationSpec, rows: pa.Table, keys: tuple[str, ...], columns: list[str], metadata: dict[str, str]
    ) -> None:
        """A Delta MERGE."""
        from rivet.output.tables.delta_merge import merge_rows

        merge_rows(spec, rows, keys, columns, metadata)

    def last_merge(self, spec: DestinationSpec, export: str) -> dict[str, str] | None:
        """From the table's history."""
        from rivet.output.tables.delta_merge import last_merge

        return last_merge(spec, export)

    def current_rows(self, spec: DestinationSpec, column: str, values: list[Any], columns: list[str]) -> pa.Table:
        """A filtered read of the current version."""
        from rivet.output.tables.delta_merge import current_rows

        return current_rows(spec, column, values, columns)
