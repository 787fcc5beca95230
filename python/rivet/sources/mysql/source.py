"""MySQL and MariaDB through the native reader (binary protocol, streamed result sets)."""

from __future__ import annotations

from dataclasses import dataclass

from rivet.sources.network import NetworkSource


@dataclass(frozen=True, repr=False)
class MysqlSource(NetworkSource, kind="mysql", scheme="mysql", label="MySQL", session_type="MySession"):
    """A MySQL or MariaDB server."""
