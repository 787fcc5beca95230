"""What every lake table format shares: the TableFormat class, its column rules, and store settings."""

from __future__ import annotations

import importlib
import importlib.util
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from rivet.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.output.manifest import CommittedPart
    from rivet.output.partition import Partitioning
    from rivet.storage.destinations import Destination, DestinationSpec

# Seconds a run waits, once its rows are written, for the table check still running.
CHECK_TIMEOUT_S = 120

# Decimals of both formats stop at 38 digits.
MAX_DECIMAL_PRECISION = 38


# The destination settings each store's table libraries are given (fsspec's names).
HANDED_ON = {
    "s3://": {"key", "secret", "token", "endpoint_url", "client_kwargs"},
    "abfs://": {"account_name", "account_key", "sas_token", "connection_string"},
    "gs://": {"token", "endpoint_url"},
}


def check_settings(spec: DestinationSpec, table_format: str, library: str) -> None:
    """Refuse destination settings the table's library would not get: its commit would fail after the data."""
    for scheme, known in HANDED_ON.items():
        # Delta is refused on gs:// for what it is, not for its settings.
        if not spec.url.startswith(scheme) or (scheme == "gs://" and table_format != "iceberg"):
            continue
        given = spec.storage_options
        unknown = sorted(set(given) - known) + sorted(
            f"client_kwargs.{k}" for k in (given.get("client_kwargs") or {}) if k != "region_name"
        )
        if unknown:
            raise ConfigError(
                f"destination {spec.shown}: format: {table_format} cannot hand {', '.join(unknown)} to "
                f"{library}; it takes {', '.join(sorted(known))} "
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


def check_partition_values(batch: pa.RecordBatch, partitioning: Partitioning, label: str, export: str) -> None:
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
                f"folder and which {label} would read back as NULL; map it in the query "
                f"(NULLIF({name}, '') or another value)",
                column=name,
            )


@dataclass(frozen=True)
class LiveParts:
    """What a commit makes a table list: the run's live parts, their schema and the run's summary.

    ``append``: the parts add to what the table lists (else they replace it).
    """

    schema: pa.Schema
    live: list[CommittedPart]
    summary: dict[str, str]
    append: bool
    partitioning: Partitioning | None


class Committed(NamedTuple):
    """What a table-format commit left: the table's version, and the parts it listed before."""

    version: int | None
    before: set[str]


def run_summary(run_id: str, export: str, fingerprint: str, live: list[CommittedPart]) -> dict[str, str]:
    """What a commit records of the run (Delta commit metadata, an Iceberg snapshot summary)."""
    rows = sum(p.rows for p in live)
    return {"rivet.run_id": run_id, "rivet.export": export, "rivet.fingerprint": fingerprint, "rivet.rows": str(rows)}


# write: merge: the commit metadata a merge or replace carries (text), and the one change column it reads.
MERGE_EXPORT, MERGE_RUN, MERGE_FROM, MERGE_POSITION = "rivet.export", "rivet.run_id", "rivet.from", "rivet.position"
MERGE_OP = "__op"


class TableFormat(ABC):
    """A lake table format the parts are committed to: its rules, its library, its table."""

    name: ClassVar[str]  # as format: names it
    label: ClassVar[str]  # as people name it
    # What its commit imports, and the extra that installs it.
    modules: ClassVar[tuple[str, ...]]
    extra: ClassVar[str]

    @property
    def library(self) -> str:
        """The package that writes the table."""
        return self.modules[0].split(".")[0]

    def missing_library(self) -> ConfigError:
        """The error of a run whose format's library is not installed."""
        return ConfigError(f'format: {self.name} needs the {self.library} package: pip install "rivet[{self.extra}]"')

    def check_installed(self) -> None:
        """Raise :meth:`missing_library` when the library cannot be imported."""
        if importlib.util.find_spec(self.library) is None:
            raise self.missing_library()

    def check_destination(self, spec: DestinationSpec) -> None:
        """Refuse a destination the format cannot be written to (no library needed for the rules)."""
        check_settings(spec, self.name, self.library)
        self.location(spec)

    def check_columns(self, schema: pa.Schema, export: str, *, by_library: bool = False) -> None:
        """Refuse a column the table format cannot hold exactly.

        Both libraries map some Arrow types silently onto narrower ones (an unsigned
        integer onto the signed type of its width), and delta-rs refuses others only when
        it commits: those are refused by rule, before any row is read (no library needed).
        ``by_library``: then each column goes through the library's own mapping too, which
        names what it refuses (before the run commits; the library is imported by then).
        """
        import pyarrow as pa

        for f in schema:
            problem = self.refused(f.type, f.name)
            if problem is None and by_library:
                try:
                    self.map_schema(pa.schema([f]))
                except Exception as e:  # noqa: BLE001 - each library raises its own kind; its first line says why
                    problem = f"{self.label} cannot hold it ({reason(e)}); cast it in the query (to text, say)"
            if problem is not None:
                raise ConfigError(f"export '{export}': column {f.name} is {f.type}, and {problem}")

    def refused(self, t: pa.DataType, column: str) -> str | None:
        """Why the format cannot hold type ``t`` exactly (None: it can), by rule."""
        import pyarrow as pa

        if pa.types.is_unsigned_integer(t):
            wider = "DECIMAL(20,0)" if t == pa.uint64() else "SIGNED"
            return (
                f"{self.label} has no unsigned integers; cast it to a wider signed type in the query: "
                f"CAST({column} AS {wider}) AS {column}"
            )
        if pa.types.is_decimal(t) and t.precision > MAX_DECIMAL_PRECISION:
            return (
                f"{self.label} decimals hold at most {MAX_DECIMAL_PRECISION} digits; set its precision with "
                f"columns: {{{column}: decimal(38,s)}}, or export it as text"
            )
        if pa.types.is_null(t):
            return "it has no type (every value is NULL); cast it in the query"
        return None

    def check_partitioning(self, schema: pa.Schema, partitioning: Partitioning | None, export: str) -> None:
        """Refuse, before any row is read, a partition_by the format cannot hold (by default, none)."""
        return None

    @abstractmethod
    def map_schema(self, schema: pa.Schema) -> None:
        """Map ``schema`` with the library's own rules; raise what it says of a column it cannot map."""

    @abstractmethod
    def location(self, spec: DestinationSpec) -> str:
        """The table's folder as the library opens it; ConfigError for a store it cannot write."""

    @abstractmethod
    def check_table(self, destination: Destination, partitioning: Partitioning | None) -> None:
        """Refuse, before a run commits, a table that is elsewhere or partitioned otherwise."""

    @abstractmethod
    def commit(self, destination: Destination, parts: LiveParts) -> Committed:
        """Make the table list exactly ``parts.live`` (no new version when it already does)."""

    @abstractmethod
    def listed_parts(self, destination: Destination) -> set[str] | None:
        """The names of the parts the table's current version lists; None when there is no table."""

    @abstractmethod
    def open(self, spec: DestinationSpec, version: int | None) -> Any:
        """The library's table at ``version``."""

    @abstractmethod
    def read(self, spec: DestinationSpec, version: int | None) -> pa.Table:
        """Every row of the table at ``version``."""

    @abstractmethod
    def scan(self, spec: DestinationSpec, version: int | None) -> Any:
        """A polars LazyFrame over the table at ``version``."""

    # write: merge. A format without it is refused when the config is checked.
    merges: ClassVar[bool] = False

    def replace_rows(self, spec: DestinationSpec, rows: pa.RecordBatchReader, metadata: dict[str, str]) -> None:
        """Make the table hold exactly ``rows``, in one commit carrying ``metadata``."""
        raise ConfigError(f"write: merge is not supported for {self.label} tables")

    def merge_rows(
        self, spec: DestinationSpec, rows: pa.Table, keys: tuple[str, ...], columns: list[str], metadata: dict[str, str]
    ) -> None:
        """Merge ``rows`` into the table by ``keys`` (``__op`` delete deletes), in one commit carrying ``metadata``."""
        raise ConfigError(f"write: merge is not supported for {self.label} tables")

    def last_merge(self, spec: DestinationSpec, export: str) -> dict[str, str] | None:
        """The metadata of ``export``'s newest merge or replace (None: none)."""
        raise ConfigError(f"write: merge is not supported for {self.label} tables")

    def current_rows(self, spec: DestinationSpec, column: str, values: list[Any], columns: list[str]) -> pa.Table:
        """The table's rows whose ``column`` is one of ``values``, ``columns`` of them."""
        raise ConfigError(f"write: merge is not supported for {self.label} tables")
