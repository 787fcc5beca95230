"""MySQL and MariaDB through the native reader (binary protocol, streamed result sets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rivet.sources.base import ColumnOverrides
from rivet.sources.network import NetworkSource

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet._native import BatchReader, MySession
    from rivet.tuning import Tuning


@dataclass(frozen=True, repr=False)
class MysqlSource(NetworkSource):
    """A MySQL or MariaDB server."""

    kind: ClassVar[str] = "mysql"
    scheme: ClassVar[str] = "mysql"
    label: ClassVar[str] = "MySQL"

    def session(self) -> MySession:
        """A reusable connection (planning queries, chunk scans)."""
        from rivet._native import MySession

        return MySession(self.connect_args())

    def describe(self, query: str, overrides: ColumnOverrides) -> pa.Schema:
        """The Arrow schema of ``query``."""
        import pyarrow as pa

        decimal, text = self.split_overrides(overrides)
        return pa.schema(self.session().describe(query, decimal, text))

    def scan(self, query: str, overrides: ColumnOverrides, tuning: Tuning) -> BatchReader:
        """Stream ``query`` as one statement (MySQL has no server-side cursor to page with)."""
        decimal, text = self.split_overrides(overrides)
        options = {
            "method": "copy",
            "batch_rows": tuning.batch_rows,
            "batch_bytes": tuning.batch_bytes,
            "statement_timeout_ms": tuning.statement_timeout_s * 1000,
            "lock_timeout_ms": 0,
            "throttle_ms": 0,
            "snapshot": None,
            "prefetch": 2,
        }
        return self.session().scan(query, None, options, decimal, text)

    def quote_identifier(self, name: str) -> str:
        """```name``` with embedded backticks doubled."""
        return "`" + name.replace("`", "``") + "`"
