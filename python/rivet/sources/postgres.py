"""PostgreSQL through the native reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rivet.sources.base import ColumnOverrides
from rivet.sources.network import NetworkSource, redact_url

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet._native import BatchReader, PgSession
    from rivet.tuning import Tuning

__all__ = ["PostgresSource", "redact_url"]


@dataclass(frozen=True, repr=False)
class PostgresSource(NetworkSource):
    """A PostgreSQL server."""

    kind: ClassVar[str] = "postgres"
    scheme: ClassVar[str] = "postgresql"
    label: ClassVar[str] = "PostgreSQL"

    def session(self) -> PgSession:
        """A reusable connection (planning queries, chunk scans)."""
        from rivet._native import PgSession

        return PgSession(self.connect_args())

    def describe(self, query: str, overrides: ColumnOverrides) -> pa.Schema:
        """The Arrow schema of ``query``."""
        import pyarrow as pa

        from rivet import _native

        decimal, text = self.split_overrides(overrides)
        return pa.schema(_native.describe_postgres(self.connect_args(), query, decimal, text))

    def scan(self, query: str, overrides: ColumnOverrides, tuning: Tuning, *, method: str = "cursor") -> BatchReader:
        """Stream ``query`` (cursor reads for whole results, ``copy`` for bounded chunks)."""
        from rivet import _native

        decimal, text = self.split_overrides(overrides)
        options = {
            "method": method,
            "batch_rows": tuning.batch_rows,
            "batch_bytes": tuning.batch_bytes,
            "statement_timeout_ms": tuning.statement_timeout_s * 1000,
            "lock_timeout_ms": tuning.lock_timeout_s * 1000,
            "throttle_ms": tuning.throttle_ms,
            "snapshot": None,
            "prefetch": 2,
        }
        return _native.scan_postgres(self.connect_args(), query, options, decimal, text)

    def quote_identifier(self, name: str) -> str:
        """``"name"`` with embedded quotes doubled."""
        return '"' + name.replace('"', '""') + '"'
