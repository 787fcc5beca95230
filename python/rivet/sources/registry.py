"""The databases rivet reads, by source type: each one's dialect, catalog and capabilities."""

from __future__ import annotations

from rivet.sources.base import SourceCapabilities
from rivet.sources.catalog import Catalog
from rivet.sources.dialect import Dialect
from rivet.sources.mysql.catalog import MysqlCatalog
from rivet.sources.mysql.dialect import MysqlDialect
from rivet.sources.postgres.catalog import PostgresCatalog
from rivet.sources.postgres.dialect import PostgresDialect
from rivet.sources.sqlite.catalog import SqliteCatalog
from rivet.sources.sqlite.dialect import SqliteDialect

_DIALECTS: dict[str, Dialect] = {"postgres": PostgresDialect(), "mysql": MysqlDialect(), "sqlite": SqliteDialect()}
_CATALOGS: dict[str, Catalog] = {"postgres": PostgresCatalog(), "mysql": MysqlCatalog(), "sqlite": SqliteCatalog()}


def dialect_for(kind: str) -> Dialect:
    """The dialect of a source type (``postgres``, ``mysql``, ``sqlite``)."""
    return _DIALECTS[kind]


def catalog_for(kind: str) -> Catalog:
    """The catalog of a source type."""
    return _CATALOGS[kind]


def capabilities_for(kind: str) -> SourceCapabilities:
    """What a source type can do."""
    return _CATALOGS[kind].capabilities
