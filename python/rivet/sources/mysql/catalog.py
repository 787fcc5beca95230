"""MySQL's and MariaDB's catalog (information_schema), index dives and EXPLAIN FORMAT=JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rivet.sources.base import SourceCapabilities
from rivet.sources.catalog import KeyCuts, KeyOrigin, Pooler, ServerCatalog, Table, UniqueKey, unique_keys_from
from rivet.sources.mysql.dialect import MysqlDialect
from rivet.sources.mysql.estimates import estimated_cuts, leading_index, rows_in

MYSQL = MysqlDialect()
INDEX_ACCESS = {"range", "ref", "eq_ref", "const", "system", "ref_or_null", "index_merge", "unique_subquery"}


class MysqlCatalog(ServerCatalog):
    """MySQL and MariaDB: index dives for cuts; a single-stream read is one streamed statement."""

    capabilities: ClassVar[SourceCapabilities] = SourceCapabilities(streams_one_statement=True, captures_changes=True)

    def tables_query(self, schema: str | None) -> str:
        """The base tables of ``schema`` (default: the connection's database)."""
        where = MYSQL.string(schema) if schema else "DATABASE()"
        return (
            "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = {where} AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
        )

    def columns_query(self, table: Table) -> str:
        """``information_schema.COLUMNS``."""
        return (
            "SELECT COLUMN_NAME, IF(IS_NULLABLE = 'NO', 1, 0), COLUMN_TYPE FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = {MYSQL.string(table.schema or '')} "
            f"AND TABLE_NAME = {MYSQL.string(table.name)} ORDER BY ORDINAL_POSITION"
        )

    def table_rows(self, session: Any, origin: KeyOrigin) -> int | None:
        """``information_schema.TABLES.TABLE_ROWS``."""
        schema, table = MYSQL.qualified_parts(origin.relation)
        rows = session.query(
            f"SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {table}"
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None and int(rows[0][0]) > 0 else None

    def leads_an_index(self, session: Any, origin: KeyOrigin) -> bool:
        """An index whose first column is the key."""
        return leading_index(session, origin.relation, origin.column) is not None

    def key_nullable(self, session: Any, origin: KeyOrigin) -> bool:
        """``information_schema.COLUMNS.IS_NULLABLE``."""
        schema, table = MYSQL.qualified_parts(origin.relation)
        rows = session.query(
            "SELECT IS_NULLABLE FROM information_schema.COLUMNS WHERE "
            f"TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} AND COLUMN_NAME = {MYSQL.string(origin.column)}"
        )
        return not rows or rows[0][0] != "NO"

    def unique_keys(self, session: Any, relation: str) -> list[UniqueKey]:
        """Unique indexes on whole columns (a prefix index does not order the column)."""
        schema, table = MYSQL.qualified_parts(relation)
        rows = session.query(
            "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE FROM information_schema.STATISTICS s "
            "JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME "
            f"AND c.COLUMN_NAME = s.COLUMN_NAME WHERE s.TABLE_SCHEMA = {schema} AND s.TABLE_NAME = {table} "
            "AND s.NON_UNIQUE = 0 AND s.INDEX_NAME NOT IN (SELECT INDEX_NAME FROM information_schema.STATISTICS "
            f"  WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} AND SUB_PART IS NOT NULL) "
            "ORDER BY s.INDEX_NAME <> 'PRIMARY', s.INDEX_NAME, s.SEQ_IN_INDEX"
        )
        return unique_keys_from(rows)

    def estimated_cuts(self, session: Any, key: KeyCuts) -> list[int] | None:
        """Cut points from the optimizer's index dives; None when the key leads no index."""
        origin, kind = key.origin, key.kind
        if leading_index(session, origin.relation, origin.column) is None:
            return None
        k = kind.quote(origin.column)
        row = session.query(
            f"SELECT {kind.as_number(f'MIN({k})')}, {kind.as_number(f'MAX({k})')} FROM {origin.relation}"
        )[0]
        if row[0] is None or row[1] is None:
            return None
        return estimated_cuts(
            session, origin.relation, origin.column, kind, int(row[0]), int(row[1]), key.target, key.wanted
        )

    def explain_summary(self, explained: Any) -> tuple[int | None, int | None, str | None]:
        """The first row estimate; each table's access type as the path (no row width)."""
        tables = _tables(explained)
        path = ", ".join(f"{t.get('access_type', '?')} on {t.get('table_name', '?')}" for t in tables) or None
        rows = rows_in(explained)
        return (rows if rows >= 0 else None), None, path

    def reaches_by_index(self, explained: Any) -> bool:
        """Every table reached by an index access type."""
        tables = _tables(explained)
        return bool(tables) and all(t.get("access_type") in INDEX_ACCESS for t in tables)

    def pooler(self, session: Any, another: Callable[[], Any]) -> Pooler | None:
        """ProxySQL, which says so in ``@@version_comment``."""
        comment = str(session.query("SELECT @@version_comment LIMIT 1")[0][0] or "")
        if "proxysql" not in comment.lower():
            return None
        return Pooler(
            "ProxySQL",
            "ProxySQL answers: keep rivet's reads on the primary or a replica without lag "
            "(its query rules may route statements apart)",
        )


def _tables(document: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(document, dict):
        if "access_type" in document:
            found.append(document)
        for value in document.values():
            found += _tables(value)
    elif isinstance(document, list):
        for value in document:
            found += _tables(value)
    return found
