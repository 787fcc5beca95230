"""One Dialect per source kind: the only place SQL text is built from values."""

from __future__ import annotations

from rivet.dialects.base import KEY_KINDS, Dialect
from rivet.dialects.mysql import MysqlDialect
from rivet.dialects.postgres import PostgresDialect
from rivet.dialects.sqlite import SqliteDialect

__all__ = ["KEY_KINDS", "Dialect", "MysqlDialect", "PostgresDialect", "SqliteDialect", "dialect_for"]

_DIALECTS: dict[str, Dialect] = {"postgres": PostgresDialect(), "mysql": MysqlDialect(), "sqlite": SqliteDialect()}


def dialect_for(kind: str) -> Dialect:
    """The dialect of a source kind (``postgres``, ``mysql``, ``sqlite``)."""
    return _DIALECTS[kind]
