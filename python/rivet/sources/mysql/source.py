"""MySQL and MariaDB through the native reader (binary protocol, streamed result sets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivet.sources.network import NetworkSource

if TYPE_CHECKING:
    from rivet.sources.changes import ChangeFeed, ChangeSpec


@dataclass(frozen=True, repr=False)
class MysqlSource(NetworkSource, kind="mysql", scheme="mysql", label="MySQL", session_type="MySession"):
    """A MySQL or MariaDB server."""

    def change_feed(self, tables: list[tuple[str, ...]], spec: ChangeSpec, export: str) -> ChangeFeed:
        """The changes of ``tables`` through the binary log."""
        from rivet.sources.mysql.changes import MyChangeFeed

        return MyChangeFeed(self, tables, spec, export)
