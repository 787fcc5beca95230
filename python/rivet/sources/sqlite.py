"""SQLite files through the native reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivet.sources.base import ColumnOverrides

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet._native import BatchReader
    from rivet.tuning import Tuning


@dataclass(frozen=True)
class SqliteSource:
    """A SQLite database file, opened read-only."""

    path: str
    kind: str = "sqlite"

    def _types(self, overrides: ColumnOverrides) -> dict[str, str]:
        types = dict(overrides.other)
        types.update({c: f"decimal({p},{s})" for c, (p, s) in overrides.decimal.items()})
        return types

    def describe(self, query: str, overrides: ColumnOverrides) -> pa.Schema:
        """The Arrow schema of ``query``."""
        import pyarrow as pa

        from rivet import _native

        return pa.schema(_native.describe_sqlite(self.path, query, self._types(overrides)))

    def scan(self, query: str, overrides: ColumnOverrides, tuning: Tuning) -> BatchReader:
        """Stream ``query``."""
        from rivet import _native

        options = {
            "method": "cursor",
            "batch_rows": tuning.batch_rows,
            "batch_bytes": tuning.batch_bytes,
            "statement_timeout_ms": 0,
            "lock_timeout_ms": 0,
            "throttle_ms": 0,
            "snapshot": None,
            "prefetch": 2,
        }
        return _native.scan_sqlite(self.path, query, options, self._types(overrides))

    def redacted(self) -> str:
        """``sqlite:///path``."""
        return f"sqlite:///{self.path}"

    def quote_identifier(self, name: str) -> str:
        """``"name"`` with embedded quotes doubled."""
        return '"' + name.replace('"', '""') + '"'
