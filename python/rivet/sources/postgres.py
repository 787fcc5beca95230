"""PostgreSQL through the native reader."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rivet.errors import ConfigError
from rivet.sources.base import ColumnOverrides

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet._native import BatchReader
    from rivet.tuning import Tuning

TEXT_TYPES = ("text", "string")


@dataclass(frozen=True)
class PostgresSource:
    """Connection settings for the native PostgreSQL reader (the password is never shown)."""

    url: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    tls_mode: str | None = None
    ca_file: str | None = None
    accept_invalid_certs: bool = False
    accept_invalid_hostnames: bool = False
    connect_timeout_s: float = 30.0
    kind: str = "postgres"

    def __repr__(self) -> str:
        return f"PostgresSource({self.redacted()})"

    def connect_args(self) -> dict[str, Any]:
        """The dict the native reader takes."""
        return {
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "tls_mode": self.tls_mode,
            "ca_file": self.ca_file,
            "accept_invalid_certs": self.accept_invalid_certs,
            "accept_invalid_hostnames": self.accept_invalid_hostnames,
            "connect_timeout_s": self.connect_timeout_s,
        }

    def redacted(self) -> str:
        """``postgresql://user:***@host:port/db`` with any password hidden."""
        if self.url:
            return redact_url(self.url)
        auth = f"{self.user}{':***' if self.password else ''}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"postgresql://{auth}{self.host}{port}/{self.database or ''}"

    def _overrides(self, overrides: ColumnOverrides) -> tuple[dict[str, tuple[int, int]], list[str]]:
        text = []
        for column, type_name in overrides.other.items():
            if type_name not in TEXT_TYPES:
                raise ConfigError(
                    f"columns: {column}: '{type_name}' is not an override for PostgreSQL; "
                    "use decimal(p,s) for numeric columns or text for any column "
                    "(or cast in the query)"
                )
            text.append(column)
        return overrides.decimal, text

    def describe(self, query: str, overrides: ColumnOverrides) -> pa.Schema:
        """The Arrow schema of ``query``."""
        import pyarrow as pa

        from rivet import _native

        decimal, text = self._overrides(overrides)
        return pa.schema(_native.describe_postgres(self.connect_args(), query, decimal, text))

    def scan(self, query: str, overrides: ColumnOverrides, tuning: Tuning, *, method: str = "cursor") -> BatchReader:
        """Stream ``query`` (cursor reads for whole results, ``copy`` for bounded chunks)."""
        from rivet import _native

        decimal, text = self._overrides(overrides)
        options = {
            "method": method,
            "batch_rows": tuning.batch_rows,
            "batch_bytes": tuning.batch_bytes,
            "statement_timeout_ms": tuning.statement_timeout_s * 1000,
            "lock_timeout_ms": tuning.lock_timeout_s * 1000,
            "throttle_ms": tuning.throttle_ms,
            "snapshot": None,
            "prefetch": 2,
        }
        return _native.scan_postgres(self.connect_args(), query, options, decimal, text)

    def quote_identifier(self, name: str) -> str:
        """``"name"`` with embedded quotes doubled."""
        return '"' + name.replace('"', '""') + '"'


_URL_PASSWORD = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):(?P<pw>[^@/]*)@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with the password (and a ``password=`` parameter) replaced by ``***``."""
    out = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", out, flags=re.IGNORECASE)
