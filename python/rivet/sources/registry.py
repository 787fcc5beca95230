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

# The URL schemes that name each source type.
URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "postgres": ("postgres://", "postgresql://"),
    "mysql": ("mysql://", "mariadb://"),
    "sqlite": ("sqlite:///",),
}
# The source type a plain file path names (a database that is one file).
FILE_DATABASE = "sqlite"

_DIALECTS: dict[str, Dialect] = {"postgres": PostgresDialect(), "mysql": MysqlDialect(), "sqlite": SqliteDialect()}
_CATALOGS: dict[str, Catalog] = {"postgres": PostgresCatalog(), "mysql": MysqlCatalog(), "sqlite": SqliteCatalog()}


def dialect_for(kind: str) -> Dialect:
    """The dialect of a source type (``postgres``, ``mysql``, ``sqlite``)."""
    return _DIALECTS[kind]


def catalog_for(kind: str) -> Catalog:
    """The catalog of a source type."""
    return _CATALOGS[kind]


def kind_of_url(url: str) -> tuple[str, str] | None:
    """The source type a URL names by its scheme, and the URL after the scheme; None for another URL."""
    for kind, schemes in URL_SCHEMES.items():
        for scheme in schemes:
            if url.startswith(scheme):
                return kind, url.removeprefix(scheme)
    return None


def capabilities_for(kind: str) -> SourceCapabilities:
    """What a source type can do."""
    return _CATALOGS[kind].capabilities
