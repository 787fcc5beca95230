"""One Dialect per source kind: the only place SQL text is built from values."""

from __future__ import annotations

from rivet.sources.dialect import KEY_KINDS, Dialect
from rivet.sources.mysql.dialect import MysqlDialect
from rivet.sources.postgres.dialect import PostgresDialect
from rivet.sources.sqlite.dialect import SqliteDialect

__all__ = ["KEY_KINDS", "Dialect", "MysqlDialect", "PostgresDialect", "SqliteDialect", "dialect_for"]

_DIALECTS: dict[str, Dialect] = {"postgres": PostgresDialect(), "mysql": MysqlDialect(), "sqlite": SqliteDialect()}


def dialect_for(kind: str) -> Dialect:
    """The dialect of a source kind (``postgres``, ``mysql``, ``sqlite``)."""
    return _DIALECTS[kind]
