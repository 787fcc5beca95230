"""MySQL and MariaDB through the native reader (binary protocol, streamed result sets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rivet.sources.dialects import Dialect, dialect_for
from rivet.sources.network import NetworkSource

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

    def session(self) -> MySession:
        """A reusable connection (planning queries, chunk scans)."""
        from rivet._native import MySession

        session = MySession(self.connect_args())
        self.warn_about_channel(session.channel)
        return session
