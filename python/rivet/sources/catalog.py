"""What a database's catalog and planner say, without reading the data: one Catalog per database.

Code outside ``rivet.sources`` asks these methods (and ``capabilities``) instead of branching
on the database's name. Estimates only place chunk cuts: ranges stay contiguous and
open-ended, so a wrong estimate makes a chunk bigger or smaller, never loses a row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from rivet.sources.base import SourceCapabilities
    from rivet.sources.dialect import Dialect, KeyKind


@dataclass(frozen=True)
class KeyOrigin:
    """The table column a chunk key reads directly (quoted, qualified table; column name)."""

    relation: str
    column: str


@dataclass(frozen=True)
class KeyCuts:
    """What chunk cuts are wanted over a key: about ``target`` rows apart, ``wanted`` ranges."""

    origin: KeyOrigin
    kind: KeyKind
    source_type: str  # the key column's type as the server names it
    rows: int | None  # the rows to plan for (an estimate)
    target: int
    wanted: int


@dataclass(frozen=True)
class UniqueKey:
    """A primary key or unique index a keyset read can walk: its columns in index order."""

    name: str
    columns: tuple[str, ...]
    nullable: tuple[str, ...]  # the columns that may be NULL (a unique index then repeats NULLs)


def unique_keys_from(rows: list[list[str | None]]) -> list[UniqueKey]:
    """Unique keys from catalog rows ``(index, column, nullable 1/t)`` listed in index and key order."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for index, column, nullable in rows:
        columns, nullables = found.setdefault(str(index), ([], []))
        columns.append(str(column))
        if nullable in ("t", "1", "YES"):
            nullables.append(str(column))
    return [UniqueKey(name, tuple(cols), tuple(nulls)) for name, (cols, nulls) in found.items()]


@dataclass
class Column:
    """A column as the catalog shows it."""

    name: str
    not_null: bool
    type: str


@dataclass
class Table:
    """A table, its estimated rows, primary key and columns."""

    schema: str | None
    name: str
    rows: int
    key: list[str] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)

    @property
    def parts(self) -> tuple[str, ...]:
        """The exact names: ``(schema, name)`` (SQLite: ``(name,)``)."""
        return (self.schema, self.name) if self.schema else (self.name,)

    def sql(self, dialect: Dialect) -> str:
        """The name as SQL, each part quoted."""
        return ".".join(dialect.quote(p) for p in self.parts)


@dataclass(frozen=True)
class ReplicationSlot:
    """A logical replication slot and the log it holds back on the server."""

    name: str
    plugin: str
    active: bool
    retained_bytes: int | None  # log kept for it; None when the server cannot say
    wal_status: str | None  # PostgreSQL: reserved, extended, unreserved or lost


@dataclass(frozen=True)
class Pooler:
    """A pooler or proxy found between rivet and the server, and what that means for a run."""

    name: str
    advice: str


class Catalog(ABC):
    """One database's catalog queries, planner estimates and EXPLAIN reading."""

    capabilities: ClassVar[SourceCapabilities]

    @abstractmethod
    def tables(self, source: Any, schema: str | None) -> list[Table]:
        """The base tables of ``schema`` (the database's default when None), with keys and columns."""

    def table_rows(self, session: Any, origin: KeyOrigin) -> int | None:
        """The row count the catalog keeps for the key's table (no scan)."""
        return None

    def leads_an_index(self, session: Any, origin: KeyOrigin) -> bool:
        """Whether an index of the key's table leads with the key column."""
        return False

    def key_nullable(self, session: Any, origin: KeyOrigin) -> bool:
        """Whether the key may be NULL (statistics may be stale, so only a NOT NULL column says no)."""
        return True

    def unique_keys(self, session: Any, relation: str) -> list[UniqueKey]:
        """The primary key and unique indexes of ``relation`` a keyset read can walk, primary key first.

        Only indexes on whole columns, without expressions or predicates, ordered as the columns are.
        """
        return []

    def estimated_cuts(self, session: Any, key: KeyCuts) -> list[int] | None:
        """Key cut points about ``target`` rows apart from statistics or index dives; None without them."""
        return None

    def table_pages(self, session: Any, relation: str) -> tuple[int, int] | None:
        """The heap pages of ``relation`` and their size in bytes (None: no page ranges to read by)."""
        return None

    def export_snapshot(self, session: Any) -> str:
        """Open a read-only transaction on ``session`` and export its snapshot for other connections."""
        raise NotImplementedError(f"{type(self).__name__} cannot share a snapshot between connections")

    def explain_summary(self, explained: Any) -> tuple[int | None, int | None, str | None]:
        """Rows, bytes per row and the access path of an EXPLAIN document."""
        return None, None, None

    def reaches_by_index(self, explained: Any) -> bool:
        """Whether every table in an EXPLAIN document is reached through an index."""
        return False

    def pooler(self, session: Any, another: Callable[[], Any]) -> Pooler | None:
        """A pooler or proxy between rivet and the server, from what it does to statements.

        ``another`` opens a second session, for what two sessions at once show.
        """
        return None

    def replication_slots(self, session: Any) -> list[ReplicationSlot]:
        """The server's logical replication slots (none where the database has no such thing)."""
        return []


class ServerCatalog(Catalog):
    """A database server's catalog, which lists its tables and columns through SQL on a session."""

    def tables(self, source: Any, schema: str | None) -> list[Table]:
        """The base tables of ``schema`` (the server's default when None), with keys and columns."""
        session, dialect = source.session(), source.dialect
        tables = [Table(r[0], str(r[1]), int(float(r[2] or 0))) for r in session.query(self.tables_query(schema))]
        for table in tables:
            table.key = [r[0] for r in session.query(dialect.primary_key_query(table.sql(dialect))) if r[0]]
            table.columns = [
                Column(str(r[0]), r[1] in ("t", "1", "true"), str(r[2]))
                for r in session.query(self.columns_query(table))
            ]
        return tables

    @abstractmethod
    def tables_query(self, schema: str | None) -> str:
        """SQL listing (schema, name, estimated rows) of the base tables of ``schema``."""

    @abstractmethod
    def columns_query(self, table: Table) -> str:
        """SQL listing (name, NOT NULL as t/1, type) of the columns of ``table``, in order."""
