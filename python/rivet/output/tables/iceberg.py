"""``format: iceberg``: the run's Parquet parts committed to an Iceberg table, in one snapshot.

The parts are written and made visible as for Parquet output, in the table's folder;
Iceberg readers see only the files the current snapshot lists, so a part is visible
to them only once the run commits. The commit makes the snapshot list exactly the
parts the manifest lists (what the run added, and what it superseded removed) in one
catalog transaction, after the state commit. A kill between the two is repaired by
the next run, whose commit lists the parts of every committed run again; a commit
with nothing to change is not made, so a run is never committed twice.

The parts carry no Iceberg field ids: the table's name mapping (kept equal to its
schema) tells readers which column is which.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rivet.core.redact import redact_url
from rivet.errors import ConfigError, DestinationError, SchemaDriftError
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

    from rivet.config.blocks import IcebergConfig
    from rivet.output.manifest import CommittedPart
    from rivet.output.partition import Partitioning
    from rivet.storage.destinations import Destination, DestinationSpec

# Seconds to connect to a PostgreSQL catalog (unless its URL says).
CONNECT_TIMEOUT_S = 10
# The embedded default catalog, a SQLite file beside the config and its state.
CATALOG_FILE = ".rivet_iceberg.db"


@dataclass(frozen=True)
class IcebergTable:
    """Where an export's Iceberg table is registered: its catalog, namespace and name."""

    catalog_url: str = field(repr=False)
    namespace: str
    name: str
    catalog_properties: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __repr__(self) -> str:
        return f"IcebergTable({self.shown})"

    @classmethod
    def from_config(cls, config: IcebergConfig | None, export: str, base_dir: Path) -> IcebergTable:
        """The table of ``export``; without ``iceberg:``, the default catalog beside the config.

        A relative ``sqlite:///`` file is beside the config too, wherever rivet runs from.
        """
        url = config.catalog_url if config and config.catalog_url else f"sqlite:///{CATALOG_FILE}"
        if url.startswith("sqlite:///") and not Path(path := url.removeprefix("sqlite:///")).is_absolute():
            url = f"sqlite:///{base_dir.resolve() / path}"
        return cls(
            catalog_url=url,
            namespace=config.namespace if config else "rivet",
            name=(config.table if config and config.table else export.replace(".", "_")),
            catalog_properties=dict(config.catalog_properties) if config else {},
        )

    @property
    def shown(self) -> str:
        """The table as messages name it, without credentials."""
        return f"{self.namespace}.{self.name} in {redact_url(self.catalog_url)}"


def catalog_properties(table: IcebergTable, spec: DestinationSpec) -> dict[str, str]:
    """The catalog's connection and the destination's credentials, as pyiceberg names them."""
    url = table.catalog_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        if "connect_timeout=" not in url:
            # A catalog database that never answers fails the connection, not the run's wait.
            url += ("&" if "?" in url else "?") + f"connect_timeout={CONNECT_TIMEOUT_S}"
    properties = {"uri": url}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if not url.startswith(("http://", "https://")):
        properties["type"] = "sql"
    given = spec.storage_options
    azure = {
        "connection_string": "adls.connection-string",
        "account_name": "adls.account-name",
        "account_key": "adls.account-key",
        "sas_token": "adls.sas-token",
    }
    if spec.url.startswith("abfs://"):
        properties |= {azure[k]: str(v) for k, v in given.items() if k in azure and v}
        return {**properties, **table.catalog_properties}
    if spec.url.startswith("gs://"):
        # Through gcsfs, as rivet writes the parts: the same credentials (a service account file,
        # anon, or the machine's default) and the same endpoint reach the table's files.
        properties["py-io-impl"] = "pyiceberg.io.fsspec.FsspecFileIO"
        # gcsfs's own default (pyiceberg would pass None, which gcsfs warns about on every open).
        properties["gcs.project-id"] = os.environ.get("GCSFS_DEFAULT_PROJECT", "")
        gcs = {"token": "gcs.oauth2.token", "endpoint_url": "gcs.service.host"}
        properties |= {gcs[k]: str(v) for k, v in given.items() if k in gcs and v}
        return {**properties, **table.catalog_properties}
    names = {
        "key": "s3.access-key-id",
        "secret": "s3.secret-access-key",
        "token": "s3.session-token",
        "endpoint": "s3.endpoint",
        "region": "s3.region",
    }
    properties |= {names[name]: value for name, value in s3_settings(given).items()}
    return {**properties, **table.catalog_properties}


def table_location(spec: DestinationSpec) -> str:
    """The table's folder: the destination's.

    A local folder, ``s3://bucket/prefix``, ``gs://bucket/prefix`` or ``abfs://container/prefix``.
    """
    if spec.url.startswith(("s3://", "gs://", "abfs://")):
        return spec.url.rstrip("/")
    if spec.url.startswith("/"):
        return "file://" + spec.url.rstrip("/")
    raise ConfigError(f"destination {spec.shown}: format: iceberg is written to local disk, S3, GCS or Azure for now")


@contextmanager
def _catalog(table: IcebergTable, spec: DestinationSpec, doing: str) -> Iterator[Any]:
    """The table's catalog, open while the block runs; its failures become DestinationError."""
    try:
        from pyiceberg.catalog import load_catalog
    except ImportError:
        raise IcebergFormat(table).missing_library() from None
    catalog = None
    try:
        catalog = load_catalog("rivet", **catalog_properties(table, spec))
        yield catalog
    except (ConfigError, DestinationError, SchemaDriftError):
        raise
    except Exception as e:
        # pyiceberg raises its own errors, SQLAlchemy's, pyarrow's and OSError alike.
        secrets = secret_values(catalog_properties(table, spec))
        raise DestinationError(
            f"{doing} the Iceberg table {table.shown} failed: {type(e).__name__}: {reason(e, secrets)}"
        ) from e
    finally:
        # A SQL catalog keeps a pool of connections to its database: none outlive the block.
        if engine := getattr(catalog, "engine", None):
            engine.dispose()


def _listed_files(found: Any, location: str) -> dict[str, Any]:
    """The data files of the table's current snapshot, by their name under ``location``.

    Read from the snapshot's manifests: a scan plan leaves out the files without rows,
    and rivet writes such parts (an empty result, an empty chunk).
    """
    snapshot = found.current_snapshot()
    if snapshot is None:
        return {}
    from pyiceberg.manifest import ManifestContent

    files = {}
    for manifest in snapshot.manifests(found.io):
        if manifest.content != ManifestContent.DATA:
            continue
        for entry in manifest.fetch_manifest_entry(found.io, discard_deleted=True):
            files[relative_name(location, entry.data_file.file_path)] = entry.data_file
    return files


def load_table(destination: Destination, table: IcebergTable) -> Any | None:
    """The pyiceberg table (it reads without its catalog); None when the catalog has no such table."""
    with _catalog(table, destination.spec, "reading") as catalog:
        return _found(catalog, table)


def _found(catalog: Any, table: IcebergTable) -> Any | None:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load_table((table.namespace, table.name))
    except NoSuchTableError:
        return None


def listed_parts(destination: Destination, table: IcebergTable) -> set[str] | None:
    """The names of the parts the table's current snapshot lists; None when there is no table."""
    with _catalog(table, destination.spec, "reading") as catalog:
        found = _found(catalog, table)
        return None if found is None else set(_listed_files(found, table_location(destination.spec)))


def check_table(destination: Destination, table: IcebergTable, partitioning: Partitioning | None) -> None:
    """Refuse, before a run commits, a table that is elsewhere or partitioned otherwise (the catalog answers)."""
    from pyiceberg.exceptions import NoSuchTableError

    with _catalog(table, destination.spec, "checking") as catalog:
        try:
            found = catalog.load_table((table.namespace, table.name))
        except NoSuchTableError:
            return
        _check_found(found, table_location(destination.spec), partitioning, table, destination)


def _check_found(
    found: Any, location: str, partitioning: Partitioning | None, table: IcebergTable, destination: Destination
) -> None:
    if found.location().rstrip("/") != location:
        raise DestinationError(
            f"the Iceberg table {table.shown} is at {found.location()}, not at {destination.spec.shown}; "
            "give this export its own iceberg.table"
        )
    _check_partitioning(found, partitioning, table)


def commit_live_parts(
    destination: Destination,
    table: IcebergTable,
    schema: pa.Schema,
    live: list[CommittedPart],
    summary: dict[str, str],
    *,
    append: bool,
    partitioning: Partitioning | None = None,
) -> Committed:
    """Make the table's current snapshot list exactly ``live`` (no snapshot when it already does).

    The version is the current snapshot's id (None: a table still without one).
    """
    # Every column optional in the table: a later run may add one, and Iceberg adds only optional columns.
    schema = nullable(schema)
    location = table_location(destination.spec)
    with _catalog(table, destination.spec, "committing to") as catalog:
        from pyiceberg.exceptions import NoSuchTableError

        identifier = (table.namespace, table.name)
        catalog.create_namespace_if_not_exists(table.namespace)
        try:
            found = catalog.load_table(identifier)
        except NoSuchTableError:
            created, spec = partitioned_schema(schema, partitioning)
            creation = catalog.create_table_transaction(
                identifier, schema=created, location=location, partition_spec=spec, properties=_properties(spec)
            )
            _change_files(creation, location, {}, [p.name for p in live], summary)
            creation.commit_transaction()
            return Committed(_current_snapshot_id(catalog.load_table(identifier)), set())
        _check_found(found, location, partitioning, table, destination)
        listed = _listed_files(found, location)
        wanted = {p.name for p in live}
        added = [name for name in wanted if name not in listed]
        removed = {name: data_file for name, data_file in listed.items() if name not in wanted}
        if not added and not removed:
            return Committed(_current_snapshot_id(found), set(listed))
        transaction = found.transaction()
        _evolve_schema(transaction, schema, table, append=append)
        _change_files(transaction, location, removed, sorted(added), summary)
        transaction.commit_transaction()
        return Committed(_current_snapshot_id(catalog.load_table(identifier)), set(listed))


def partitioned_schema(schema: pa.Schema, partitioning: Partitioning | None) -> tuple[Any, Any]:
    """The Iceberg schema of a new table, and its partition spec from ``partition_by``.

    A column whose folder holds its exact value is partitioned by identity; a date or
    timestamp bucketed by ``partition_granularity`` by the transform of that name (the
    folder and the Iceberg partition agree: both are UTC days for timestamptz).
    """
    from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import assign_fresh_schema_ids
    from pyiceberg.transforms import DayTransform, HourTransform, IdentityTransform, MonthTransform, YearTransform

    created = assign_fresh_schema_ids(_pyarrow_to_schema_without_ids(schema))
    if partitioning is None:
        return created, PartitionSpec()
    transforms = {
        "identity": IdentityTransform,
        "year": YearTransform,
        "month": MonthTransform,
        "day": DayTransform,
        "hour": HourTransform,
    }
    fields = []
    for offset, name in enumerate(partitioning.columns):
        key = partitioning.key(name, schema.field(name).type)
        transform = transforms[_transform_name(partitioning, name, schema)]()
        source_id = created.find_field(name).field_id
        fields.append(PartitionField(source_id=source_id, field_id=1000 + offset, transform=transform, name=key))
    return created, PartitionSpec(*fields)


def _properties(spec: Any) -> dict[str, str]:
    """Full (untruncated) statistics for the partition columns: each part's partition value comes from them."""
    return {f"write.metadata.metrics.column.{f.name}": "full" for f in spec.fields if str(f.transform) == "identity"}


def _check_partitioning(found: Any, partitioning: Partitioning | None, table: IcebergTable) -> None:
    """Refuse to commit parts partitioned otherwise than the table."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    schema = found.schema()
    have = [(schema.find_column_name(f.source_id), str(f.transform)) for f in found.spec().fields]
    want = []
    if partitioning is not None:
        columns = schema_to_pyarrow(schema, include_field_ids=False)
        want = [(name, _transform_name(partitioning, name, columns)) for name in partitioning.columns]
    if have != want:
        shown = ", ".join(f"{t}({n})" for n, t in have) or "nothing"
        raise DestinationError(
            f"the Iceberg table {table.shown} is partitioned by {shown}, unlike this export's partition_by; "
            "export to a new iceberg.table (or drop this one)"
        )


def _transform_name(partitioning: Partitioning, name: str, schema: pa.Schema) -> str:
    """``identity`` for a column whose folder holds its exact value, else its bucket (``day``, ...)."""
    exact = partitioning.key(name, schema.field(name).type) == name
    return "identity" if exact else partitioning.granularity or "day"


def _evolve_schema(transaction: Any, schema: pa.Schema, table: IcebergTable, *, append: bool) -> None:
    """Bring the table's columns to ``schema``.

    New columns are added. A replacing run (every old file goes) also drops the columns it
    no longer has, and drops and adds anew a column whose type changed, whatever the type.
    """
    from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids
    from pyiceberg.table import TableProperties

    current = _column_types(transaction.table_metadata.schema())
    wanted = _column_types(_pyarrow_to_schema_without_ids(schema))
    if current == wanted:
        return
    try:
        if not append and (doomed := [name for name, kind in current.items() if wanted.get(name) != kind]):
            with transaction.update_schema() as update:
                for name in doomed:
                    update.delete_column(name)
        with transaction.update_schema() as update:
            update.union_by_name(schema)
    except Exception as e:  # pyiceberg's ValidationError, ValueError
        raise SchemaDriftError(
            f"the columns of the Iceberg table {table.shown} cannot become these: {reason(e)}"
        ) from e
    mapping = transaction.table_metadata.schema().name_mapping.model_dump_json()
    transaction.set_properties(**{TableProperties.DEFAULT_NAME_MAPPING: mapping})


def _column_types(schema: Any) -> dict[str, str]:
    """Each top-level column's Iceberg type, without the field ids nested types name."""
    return {f.name: re.sub(r"-?\d+: ", "", str(f.field_type)) for f in schema.fields}


def _change_files(
    transaction: Any, location: str, removed: dict[str, Any], added: list[str], summary: dict[str, str]
) -> None:
    from pyiceberg.table import TableProperties, _parquet_files_to_data_files

    if transaction.table_metadata.name_mapping() is None:
        mapping = transaction.table_metadata.schema().name_mapping.model_dump_json()
        transaction.set_properties(**{TableProperties.DEFAULT_NAME_MAPPING: mapping})
    update = transaction.update_snapshot(snapshot_properties=summary)
    producer = update.overwrite() if removed else update.fast_append()
    with producer:
        for data_file in removed.values():
            producer.delete_data_file(data_file)
        paths = [f"{location}/{name}" for name in added]
        metadata = transaction.table_metadata
        for data_file in _parquet_files_to_data_files(metadata, paths, transaction._table.io):
            _check_one_partition(data_file, metadata)
            producer.append_data_file(data_file)


def _check_one_partition(data_file: Any, metadata: Any) -> None:
    """Refuse a part whose identity partition column holds NULL beside a value (an empty text)."""
    for f in metadata.spec().fields:
        nulls = data_file.null_value_counts.get(f.source_id, 0)
        if str(f.transform) == "identity" and 0 < nulls < data_file.value_counts.get(f.source_id, 0):
            column = metadata.schema().find_column_name(f.source_id)
            raise DestinationError(
                f"{data_file.file_path}: column {column} holds both NULL and a value in one partition folder "
                "(an empty text shares NULL's folder); Iceberg gives a part one partition value"
            )


def _current_snapshot_id(found: Any) -> int | None:
    snapshot = found.current_snapshot()
    return int(snapshot.snapshot_id) if snapshot is not None else None


class IcebergFormat(TableFormat):
    """Iceberg through pyiceberg, registered in a catalog: ``table`` says which."""

    name: ClassVar[str] = "iceberg"
    label: ClassVar[str] = "Iceberg"
    modules: ClassVar[tuple[str, ...]] = ("pyiceberg.catalog.sql", "pyiceberg.table", "pyiceberg.io.pyarrow")
    extra: ClassVar[str] = "iceberg"
    merges: ClassVar[bool] = True

    def __init__(self, table: IcebergTable) -> None:
        self.table = table

    def check_destination(self, spec: DestinationSpec) -> None:
        """The shared rules, and a catalog on PostgreSQL needs psycopg."""
        import importlib.util

        super().check_destination(spec)
        if self.table.catalog_url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
            raise ConfigError('an Iceberg catalog on PostgreSQL needs psycopg: pip install "psycopg[binary]"')

    def map_schema(self, schema: pa.Schema) -> None:
        """Pyiceberg's mapping of Arrow types."""
        from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids

        _pyarrow_to_schema_without_ids(schema)

    def location(self, spec: DestinationSpec) -> str:
        """The table's folder."""
        return table_location(spec)

    def check_table(self, destination: Destination, partitioning: Partitioning | None) -> None:
        """Where the catalog has the table, and its partition spec."""
        check_table(destination, self.table, partitioning)

    def commit(self, destination: Destination, parts: LiveParts) -> Committed:
        """One snapshot (none when the current one already lists the parts)."""
        return commit_live_parts(
            destination,
            self.table,
            parts.schema,
            parts.live,
            parts.summary,
            append=parts.append,
            partitioning=parts.partitioning,
        )

    def listed_parts(self, destination: Destination) -> set[str] | None:
        """The parts the current snapshot lists."""
        return listed_parts(destination, self.table)

    def open(self, spec: DestinationSpec, version: int | None) -> Any:
        """The pyiceberg ``Table`` (its snapshots include ``version``)."""
        from rivet.storage.destinations import Destination

        found = load_table(Destination(spec), self.table)
        if found is None:
            raise ConfigError(f"the Iceberg table {self.table.shown} is no longer in its catalog")
        return found

    def read(self, spec: DestinationSpec, version: int | None) -> pa.Table:
        """The live parts of snapshot ``version``."""
        return self.open(spec, version).scan(snapshot_id=version).to_arrow()

    def scan(self, spec: DestinationSpec, version: int | None) -> Any:
        """``polars.scan_iceberg``; polars reads the files itself, with the settings delta-rs takes."""
        import polars as pl

        from rivet.output.tables.delta import storage_options

        location = table_location(spec)
        options = storage_options(spec) if "://" in location.removeprefix("file://") else {}
        return pl.scan_iceberg(self.open(spec, version), snapshot_id=version, storage_options=options or None)

    def replace_rows(self, spec: DestinationSpec, rows: pa.RecordBatchReader, metadata: dict[str, str]) -> None:
        """An overwrite, the table made when missing."""
        from rivet.output.tables.iceberg_merge import replace_rows

        replace_rows(self.table, spec, rows, metadata)

    def merge_rows(
        self, spec: DestinationSpec, rows: pa.Table, keys: tuple[str, ...], columns: list[str], metadata: dict[str, str]
    ) -> None:
        """A delete and an upsert in one transaction."""
        from rivet.output.tables.iceberg_merge import merge_rows

        merge_rows(self.table, spec, rows, keys, columns, metadata)

    def last_merge(self, spec: DestinationSpec, export: str) -> dict[str, str] | None:
        """From the snapshots' summaries."""
        from rivet.output.tables.iceberg_merge import last_merge

        return last_merge(self.table, spec, export)

    def current_rows(self, spec: DestinationSpec, column: str, values: list[Any], columns: list[str]) -> pa.Table:
        """A filtered scan of the current snapshot."""
        from rivet.output.tables.iceberg_merge import current_rows

        return current_rows(self.table, spec, column, values, columns)
