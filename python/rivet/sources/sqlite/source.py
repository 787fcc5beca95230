"""SQLite files through the native reader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rivet.sources.base import ColumnOverrides, scan_options
from rivet.sources.catalog import Catalog
from rivet.sources.dialect import Dialect
from rivet.sources.registry import catalog_for, dialect_for

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet._native import BatchReader
    from rivet.config.tuning import Tuning


@dataclass(frozen=True)
class SqliteSource:
    """A SQLite database file, opened read-only."""

    path: str
    kind: str = "sqlite"
    dialect: ClassVar[Dialect] = dialect_for("sqlite")
    catalog: ClassVar[Catalog] = catalog_for("sqlite")

    def _types(self, overrides: ColumnOverrides) -> dict[str, str]:
        types = dict(overrides.other)
        types.update({c: f"decimal({p},{s})" for c, (p, s) in overrides.decimal.items()})
        return types

    def describe(self, query: str, overrides: ColumnOverrides) -> pa.Schema:
        """The Arrow schema of ``query``."""
        import pyarrow as pa

        from rivet import _native

        return pa.schema(_native.describe_sqlite(self.path, query, self._types(overrides)))

    def scan(self, query: str, overrides: ColumnOverrides, tuning: Tuning, *, reconcile: bool = False) -> BatchReader:
        """Stream ``query`` in one read transaction."""
        from rivet import _native

        options = scan_options(tuning, throttle=False, reconcile=reconcile)
        return _native.scan_sqlite(self.path, query, options, self._types(overrides))

    def redacted(self) -> str:
        """``sqlite:///path``."""
        return f"sqlite:///{self.path}"

    def identity(self) -> str:
        """``sqlite:<absolute path>``."""
        return f"sqlite:{Path(self.path).resolve()}"

    def quote_identifier(self, name: str) -> str:
        """``"name"`` with embedded quotes doubled."""
        return self.dialect.quote(name)
