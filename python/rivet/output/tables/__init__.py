"""Table formats (Delta Lake, Iceberg): checked before a run reads, their table checked while it reads.

A run whose format cannot be written (its library missing, a destination it does not
support) fails before any row is read. The library takes a good part of a second to
import, and the table is looked up (a Delta log, an Iceberg catalog: is it where the
destination is, partitioned as the export is): a thread does both while the rows are
read (the scan and the writer release the GIL), and the run waits for it before it
commits.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from rivet.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.output.manifest import CommittedPart
    from rivet.output.partition import Partitioning
    from rivet.output.tables.iceberg import IcebergTable
    from rivet.storage.destinations import DestinationSpec

# Seconds a run waits, once its rows are written, for the table check still running.
CHECK_TIMEOUT_S = 120

# What each format's commit imports, and the extra that installs it.
LIBRARIES = {
    "delta": (("deltalake",), "delta"),
    "iceberg": (("pyiceberg.catalog.sql", "pyiceberg.table", "pyiceberg.io.pyarrow"), "iceberg"),
}


# Decimals of both formats stop at 38 digits.
MAX_DECIMAL_PRECISION = 38
NAMES = {"delta": "Delta", "iceberg": "Iceberg"}


def check_columns(schema: pa.Schema, table_format: str, export: str, *, by_library: bool = False) -> None:
    """Refuse a column the table format cannot hold exactly.

    Both libraries map some Arrow types silently onto narrower ones (an unsigned
    integer onto the signed type of its width), and delta-rs refuses others only when
    it commits: those are refused by rule, before any row is read (no library needed).
    ``by_library``: then each column goes through the library's own mapping too, which
    names what it refuses (before the run commits; the library is imported by then).
    """
    import pyarrow as pa

    for f in schema:
        problem = _refused(f.type, table_format, f.name)
        if problem is None and by_library:
            problem = _unmapped(pa.schema([f]), table_format)
        if problem is not None:
            raise ConfigError(f"export '{export}': column {f.name} is {f.type}, and {problem}")


def _refused(t: pa.DataType, table_format: str, column: str) -> str | None:
    """Why ``table_format`` cannot hold type ``t`` exactly (None: it can), by rule."""
    import pyarrow as pa

    name = NAMES[table_format]
    if pa.types.is_unsigned_integer(t):
        wider = "DECIMAL(20,0)" if t == pa.uint64() else "SIGNED"
        return (
            f"{name} has no unsigned integers; cast it to a wider signed type in the query: "
            f"CAST({column} AS {wider}) AS {column}"
        )
    if pa.types.is_decimal(t) and t.precision > MAX_DECIMAL_PRECISION:
        return (
            f"{name} decimals hold at most {MAX_DECIMAL_PRECISION} digits; set its precision with "
            f"columns: {{{column}: decimal(38,s)}}, or export it as text"
        )
    if pa.types.is_null(t):
        return "it has no type (every value is NULL); cast it in the query"
    unsupported = pa.types.is_float16(t) or pa.types.is_duration(t) or pa.types.is_interval(t)
    if table_format == "delta" and (unsupported or pa.types.is_time(t)):
        return f"{name} has no such type; cast it in the query (to text, say)"
    if table_format == "delta" and pa.types.is_timestamp(t) and t.tz not in (None, "UTC"):
        return f"{name} keeps timestamps in UTC only"
    return None


# The destination settings each store's table libraries are given (fsspec's names).
HANDED_ON = {
    "s3://": {"key", "secret", "token", "endpoint_url", "client_kwargs"},
    "abfs://": {"account_name", "account_key", "sas_token", "connection_string"},
}


def check_settings(spec: DestinationSpec, table_format: str) -> None:
    """Refuse destination settings the table's library would not get: its commit would fail after the data."""
    for scheme, known in HANDED_ON.items():
        if not spec.url.startswith(scheme):
            continue
        given = spec.storage_options
        unknown = sorted(set(given) - known) + sorted(
            f"client_kwargs.{k}" for k in (given.get("client_kwargs") or {}) if k != "region_name"
        )
        if unknown:
            raise ConfigError(
                f"destination {spec.shown}: format: {table_format} cannot hand {', '.join(unknown)} to "
                f"{LIBRARIES[table_format][0][0].split('.')[0]}; it takes {', '.join(sorted(known))} "
                "(a profile or anonymous access: give keys with access_key_env/secret_key_env instead)"
            )


def relative_name(location: str, path: str) -> str:
    """A file's name under the table's folder, as the manifest names its parts."""
    prefix = location.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def nullable(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every top-level column nullable, as a table's columns are kept."""
    import pyarrow as pa

    return pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)


def s3_settings(given: dict[str, Any]) -> dict[str, str]:
    """An S3 destination's fsspec settings by what they are: key, secret, token, endpoint, region."""
    settings = {name: str(given[name]) for name in ("key", "secret", "token") if given.get(name)}
    if endpoint := given.get("endpoint_url"):
        settings["endpoint"] = str(endpoint)
    if region := (given.get("client_kwargs") or {}).get("region_name"):
        settings["region"] = str(region)
    return settings


def secret_values(settings: dict[str, str]) -> tuple[str, ...]:
    """The values of the settings that hold credentials (keys, secrets, tokens, SAS, connection strings)."""
    return tuple(
        v for k, v in settings.items() if re.search(r"key|secret|token|sas|credential|password|connection", k, re.I)
    )


def reason(error: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """A library's error in one line (delta-rs appends a Rust backtrace), URLs and ``secrets`` redacted."""
    from rivet.core.redact import redact_text

    lines = str(error).strip().splitlines()
    return redact_text(lines[0], tuple(s for s in secrets if len(s) >= 4)) if lines else type(error).__name__


def check_partition_values(batch: pa.RecordBatch, partitioning: Partitioning, table_format: str, export: str) -> None:
    """Refuse an empty text in a partition column: its folder is NULL's, and the table would read it as NULL."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from rivet.errors import DataError

    for name in partitioning.columns:
        column = batch.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        if pc.any(pc.equal(column, "")).as_py():
            raise DataError(
                f"export '{export}': partition column {name} holds an empty text, which shares NULL's partition "
                f"folder and which {NAMES[table_format]} would read back as NULL; map it in the query "
                f"(NULLIF({name}, '') or another value)",
                column=name,
            )


def _unmapped(schema: pa.Schema, table_format: str) -> str | None:
    """What the format's library says of a one-column schema it cannot map (None: it maps it)."""
    try:
        if table_format == "delta":
            from deltalake import Schema

            Schema.from_arrow(schema)
        else:
            from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids

            _pyarrow_to_schema_without_ids(schema)
    except Exception as e:  # noqa: BLE001 - each library raises its own kind; its first line says why
        return f"{NAMES[table_format]} cannot hold it ({reason(e)}); cast it in the query (to text, say)"
    return None


def missing_library(table_format: str) -> ConfigError:
    """The error of a run whose table format's library is not installed."""
    modules, extra = LIBRARIES[table_format]
    package = modules[0].split(".")[0]
    return ConfigError(f'format: {table_format} needs the {package} package: pip install "rivet[{extra}]"')


class TableCheck:
    """The checks of one run's table format: the quick ones at once, the slow ones in a thread."""

    def __init__(
        self,
        export: str,
        table_format: str,
        destination: DestinationSpec,
        partitioning: Partitioning | None,
        iceberg: IcebergTable | None,
    ) -> None:
        modules, _ = LIBRARIES[table_format]
        if importlib.util.find_spec(modules[0].split(".")[0]) is None:
            raise missing_library(table_format)
        check_settings(destination, table_format)
        if table_format == "delta":
            from rivet.output.tables.delta import table_uri

            table_uri(destination)
        else:
            from rivet.output.tables.iceberg import table_location

            table_location(destination)
            catalog = iceberg.catalog_url if iceberg else ""
            if catalog.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
                raise ConfigError('an Iceberg catalog on PostgreSQL needs psycopg: pip install "psycopg[binary]"')
        self.export = export
        self.table_format = table_format
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(modules, destination, partitioning, iceberg), name="rivet-table-check", daemon=True
        )
        self._thread.start()

    def _run(
        self,
        modules: tuple[str, ...],
        destination: DestinationSpec,
        partitioning: Partitioning | None,
        iceberg_table: IcebergTable | None,
    ) -> None:
        try:
            for name in modules:
                importlib.import_module(name)
            from rivet.storage.destinations import Destination

            if iceberg_table is not None:
                from rivet.output.tables import iceberg

                iceberg.check_table(Destination(destination), iceberg_table, partitioning)
            else:
                from rivet.output.tables import delta

                delta.check_table(Destination(destination), partitioning)
        except BaseException as e:  # noqa: BLE001 - raised in the run's own thread by wait()
            self._error = e

    def raise_if_failed(self) -> None:
        """Raise what the slow checks found so far, without waiting (between batches)."""
        if self._error is not None:
            raise self._error

    def wait(self, schema: pa.Schema) -> None:
        """Raise what the slow checks found, and what the library says of ``schema`` (before the commit).

        A catalog or store that never answers (pyiceberg's REST client sets no timeout)
        fails the run after ``RIVET_TABLE_CHECK_TIMEOUT_S`` seconds, before it publishes.
        """
        timeout = float(os.environ.get("RIVET_TABLE_CHECK_TIMEOUT_S", CHECK_TIMEOUT_S))
        self._thread.join(timeout)
        if self._thread.is_alive():
            from rivet.errors import DestinationError

            raise DestinationError(
                f"export '{self.export}': the {NAMES[self.table_format]} table's catalog or "
                f"store did not answer in {timeout:g} s; nothing was published"
            )
        self.raise_if_failed()
        check_columns(schema, self.table_format, self.export, by_library=True)


class Committed(NamedTuple):
    """What a table-format commit left: the table's version, and the parts it listed before."""

    version: int | None
    before: set[str]


def run_summary(run_id: str, export: str, fingerprint: str, live: list[CommittedPart]) -> dict[str, str]:
    """What a commit records of the run (Delta commit metadata, an Iceberg snapshot summary)."""
    rows = sum(p.rows for p in live)
    return {"rivet.run_id": run_id, "rivet.export": export, "rivet.fingerprint": fingerprint, "rivet.rows": str(rows)}


@dataclass(frozen=True)
class TableVersion:
    """The table a run committed to, as the run left it: its format, location and version.

    ``version`` is the Delta table version or the Iceberg snapshot id (None: an Iceberg
    table without a snapshot yet).
    """

    format: str
    location: str
    version: int | None
    destination: DestinationSpec = field(repr=False)
    iceberg: IcebergTable | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        from rivet.core.redact import redact_url

        shown = self.iceberg.shown if self.iceberg is not None else None
        location = redact_url(self.location)
        return {"format": self.format, "location": location, "version": self.version, "table": shown}

    def open(self) -> Any:
        """The table itself: a ``deltalake.DeltaTable`` at this version, or a pyiceberg ``Table``."""
        from rivet.storage.destinations import Destination

        if self.format == "delta":
            from deltalake import DeltaTable

            from rivet.output.tables.delta import storage_options

            return DeltaTable(self.location, version=self.version, storage_options=storage_options(self.destination))
        from rivet.output.tables.iceberg import load_table

        assert self.iceberg is not None
        found = load_table(Destination(self.destination), self.iceberg)
        if found is None:
            raise ConfigError(f"the Iceberg table {self.iceberg.shown} is no longer in its catalog")
        return found

    def to_arrow(self) -> pa.Table:
        """Every row of the table at this version (the live parts, as its log lists them)."""
        if self.format == "delta":
            return self.open().to_pyarrow_table()
        return self.open().scan(snapshot_id=self.version).to_arrow()

    def scan(self) -> Any:
        """A polars LazyFrame over the table at this version."""
        import polars as pl

        if self.format == "delta":
            from rivet.output.tables.delta import storage_options

            return pl.scan_delta(self.location, version=self.version, storage_options=storage_options(self.destination))
        # polars reads the files itself: it takes the same object-store settings as delta-rs.
        from rivet.output.tables.delta import storage_options

        options = storage_options(self.destination) if "://" in self.location.removeprefix("file://") else {}
        return pl.scan_iceberg(self.open(), snapshot_id=self.version, storage_options=options or None)
