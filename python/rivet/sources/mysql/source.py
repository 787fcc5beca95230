"""MySQL and MariaDB through the native reader (binary protocol, streamed result sets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rivet.sources.catalog import Catalog
from rivet.sources.dialect import Dialect
from rivet.sources.network import NetworkSource
from rivet.sources.registry import catalog_for, dialect_for

if TYPE_CHECKING:
    from rivet._native import MySession


@dataclass(frozen=True, repr=False)
class MysqlSource(NetworkSource):
    """A MySQL or MariaDB server."""

    kind: ClassVar[str] = "mysql"
    scheme: ClassVar[str] = "mysql"
    label: ClassVar[str] = "MySQL"
    read_method: ClassVar[str] = "copy"
    dialect: ClassVar[Dialect] = dialect_for("mysql")
    catalog: ClassVar[Catalog] = catalog_for("mysql")

    def session(self) -> MySession:
        """A reusable connection (planning queries, chunk scans)."""
        from rivet._native import MySession

        session = MySession(self.connect_args())
        self.warn_about_channel(session.channel)
        return session
