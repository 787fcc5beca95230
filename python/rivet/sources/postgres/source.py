"""PostgreSQL through the native reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rivet.sources.catalog import Catalog
from rivet.sources.dialect import Dialect
from rivet.sources.network import NetworkSource
from rivet.sources.registry import catalog_for, dialect_for

if TYPE_CHECKING:
    from rivet._native import PgSession

__all__ = ["PostgresSource"]


@dataclass(frozen=True, repr=False)
class PostgresSource(NetworkSource):
    """A PostgreSQL server."""

    kind: ClassVar[str] = "postgres"
    scheme: ClassVar[str] = "postgresql"
    label: ClassVar[str] = "PostgreSQL"
    dialect: ClassVar[Dialect] = dialect_for("postgres")
    catalog: ClassVar[Catalog] = catalog_for("postgres")

    def session(self) -> PgSession:
        """A reusable connection (planning queries, chunk scans)."""
        from rivet._native import PgSession

        session = PgSession(self.connect_args())
        self.warn_about_channel(session.channel)
        return session
