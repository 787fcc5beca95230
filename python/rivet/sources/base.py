"""What every source offers the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rivet.config.common import DECIMAL_OVERRIDE

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet._native import ArrowSchema, BatchReader
    from rivet.config.tuning import Tuning
    from rivet.sources.dialect import Dialect


@dataclass(frozen=True)
class SourceCapabilities:
    """What a database can do, asked by code outside ``rivet.sources`` instead of its name."""

    # Reached over a network connection with a URL (False: a local file).
    server: bool = True
    # Chunked and parallel reads (several statements over key ranges).
    reads_in_chunks: bool = True
    # Parallel readers can share one exported snapshot (snapshot: consistent).
    shares_snapshots: bool = False
    # A parallel full read of a table splits it by physical pages.
    splits_tables_by_pages: bool = False
    # A single-stream read is one long statement (else bounded fetches from a cursor).
    streams_one_statement: bool = False
    # The table's changes can be read from the server's log (mode: cdc).
    captures_changes: bool = False


@dataclass(frozen=True)
class ColumnOverrides:
    """An export's ``columns:`` block, split by how it is applied."""

    decimal: dict[str, tuple[int, int]] = field(default_factory=dict)
    other: dict[str, str] = field(default_factory=dict)


def parse_overrides(columns: dict[str, str]) -> ColumnOverrides:
    """Split ``columns:`` into decimal(p,s) entries and named types (already validated)."""
    decimal: dict[str, tuple[int, int]] = {}
    other: dict[str, str] = {}
    for column, type_name in columns.items():
        text = type_name.strip().lower()
        match = DECIMAL_OVERRIDE.match(text)
        if match:
            decimal[column] = (int(match.group(1)), int(match.group(2)))
        else:
            other[column] = text
    return ColumnOverrides(decimal=decimal, other=other)


def scan_options(
    tuning: Tuning,
    *,
    method: str = "cursor",
    batch_bytes: int | None = None,
    throttle: bool = True,
    snapshot: str | None = None,
    reconcile: bool = False,
) -> dict[str, Any]:
    """The reader options of one scan, as the native readers take them.

    ``reconcile`` counts the rows with ``COUNT(*)`` in the scan's own snapshot first;
    the reader reports the count with the end of the data.
    """
    return {
        "method": method,
        "batch_rows": tuning.batch_rows,
        "batch_bytes": batch_bytes or tuning.batch_bytes,
        "statement_timeout_ms": tuning.statement_timeout_s * 1000,
        "lock_timeout_ms": tuning.lock_timeout_s * 1000,
        "throttle_ms": tuning.throttle_ms if throttle else 0,
        "snapshot": snapshot,
        "prefetch": 2,
        "reconcile": reconcile,
    }


class Session(Protocol):
    """A reusable connection to a database server (PostgreSQL or MySQL) for planning and chunk scans."""

    @property
    def channel(self) -> str:
        """How the connection travels: ``plaintext`` or the TLS it verified."""
        ...

    def query(self, sql: str) -> list[list[str | None]]:
        """Rows of a small query, as text."""
        ...

    def origins(self, query: str) -> list[tuple[str, str] | None]:
        """For each result column, the table and column it reads directly (None: computed)."""
        ...

    def describe(
        self, query: str, decimal_overrides: dict[str, tuple[int, int]], text_overrides: list[str]
    ) -> ArrowSchema:
        """The Arrow schema of ``query``."""
        ...

    def scan(
        self,
        query: str,
        describe_as: str | None,
        options: dict[str, Any],
        decimal_overrides: dict[str, tuple[int, int]],
        text_overrides: list[str],
    ) -> BatchReader:
        """Stream ``query`` on this connection."""
        ...


class Source(Protocol):
    """A database rivet reads from."""

    kind: str
    dialect: Dialect

    def describe(self, query: str, overrides: ColumnOverrides) -> pa.Schema:
        """The exact Arrow schema the query will produce (raises on unsupported types)."""
        ...

    def scan(self, query: str, overrides: ColumnOverrides, tuning: Tuning, *, reconcile: bool = False) -> BatchReader:
        """Start streaming the query; errors in SQL or types are raised here."""
        ...

    def redacted(self) -> str:
        """A description safe for logs and artifacts (no credentials)."""
        ...

    def identity(self) -> str:
        """Which database this is, the same however it is written, without credentials (state keys)."""
        ...

    def quote_identifier(self, name: str) -> str:
        """``name`` quoted for this database."""
        ...
