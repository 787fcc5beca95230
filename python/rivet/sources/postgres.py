"""PostgreSQL through the native reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rivet.sources.network import NetworkSource, redact_url

if TYPE_CHECKING:
    from rivet._native import PgSession

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

    def quote_identifier(self, name: str) -> str:
        """``"name"`` with embedded quotes doubled."""
        return '"' + name.replace('"', '""') + '"'
