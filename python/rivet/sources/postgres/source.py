"""PostgreSQL through the native reader."""

from __future__ import annotations

from dataclasses import dataclass

from rivet.sources.network import NetworkSource

__all__ = ["PostgresSource"]


@dataclass(frozen=True, repr=False)
class PostgresSource(NetworkSource, kind="postgres", scheme="postgresql", label="PostgreSQL", session_type="PgSession"):
    """A PostgreSQL server."""
