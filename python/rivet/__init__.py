"""rivet: exact, fast, resumable exports from PostgreSQL, MySQL/MariaDB and SQLite to Parquet, CSV, Delta and Iceberg.

Importing the package is cheap; pyarrow and the native module load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rivet.core.version import __version__
from rivet.errors import (
    ConfigError,
    DataError,
    DestinationError,
    QueryError,
    RivetError,
    SchemaDriftError,
    SourceConnectionError,
    SourceError,
    StateError,
    UnsupportedTypeError,
)

__all__ = [
    "ConfigError",
    "DataError",
    "DestinationError",
    "ExportResult",
    "QueryError",
    "RivetError",
    "RunResult",
    "SchemaDriftError",
    "SourceConnectionError",
    "SourceError",
    "StateError",
    "UnsupportedTypeError",
    "__version__",
    "export",
    "read",
    "read_polars",
    "run",
    "stream",
]

if TYPE_CHECKING:
    from rivet.api import export, read, read_polars, run, stream
    from rivet.execution.results import ExportResult, RunResult


def __getattr__(name: str) -> Any:
    if name in ("export", "read", "read_polars", "run", "stream"):
        from rivet import api

        return getattr(api, name)
    if name in ("ExportResult", "RunResult"):
        from rivet.execution import results

        return getattr(results, name)
    raise AttributeError(f"module 'rivet' has no attribute {name!r}")
