"""PostgreSQL through the native reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivet.sources.network import NetworkSource

if TYPE_CHECKING:
    from rivet.sources.changes import ChangeFeed, ChangeSpec

__all__ = ["PostgresSource"]


@dataclass(frozen=True, repr=False)
class PostgresSource(NetworkSource, kind="postgres", scheme="postgresql", label="PostgreSQL", session_type="PgSession"):
    """A PostgreSQL server."""

    def change_feed(self, tables: list[tuple[str, ...]], spec: ChangeSpec, export: str) -> ChangeFeed:
        """The changes of ``tables`` through a pgoutput slot."""
        from rivet.sources.postgres.changes import PgChangeFeed

        return PgChangeFeed(self, tables, spec, export)
