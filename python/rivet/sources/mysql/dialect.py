"""MySQL and MariaDB SQL text."""

from __future__ import annotations

from typing import Any, ClassVar

from rivet.sources.dialect import Dialect


class MysqlDialect(Dialect):
    """MySQL/MariaDB: hex string literals, backquoted identifiers."""

    name: ClassVar[str] = "MySQL"
    begin_read_only: ClassVar[str | None] = "START TRANSACTION READ ONLY"
    quote_char: ClassVar[str] = "`"
    max_name_parts: ClassVar[int] = 2

    def qualified_parts(self, qualified: str) -> tuple[str, str]:
        """``(schema SQL, table literal)`` of a backquoted ``[schema.]table`` for information_schema."""
        parts = self.table_name(qualified)
        schema = self.string(parts[0]) if len(parts) == 2 else "DATABASE()"
        return schema, self.string(parts[-1])

    def primary_key_query(self, qualified: str) -> str:
        """The primary key columns from ``information_schema``, in key order."""
        schema, table = self.qualified_parts(qualified)
        return (
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE CONSTRAINT_NAME = 'PRIMARY' "
            f"AND TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} ORDER BY ORDINAL_POSITION"
        )

    def key_compare(self, columns: list[str], literals: list[str], op: str) -> str:
        """Row comparisons spelled out, which MariaDB plans as a range of the index.

        MariaDB reads ``(a, b) >= (x, y)`` with a full scan; ``a >= x AND (a > x OR (a = x AND
        b >= y))`` is the same set of rows as an index range.
        """
        if len(columns) == 1:
            return f"{columns[0]} {op} {literals[0]}"
        strict = op[0]
        terms = []
        for i, column in enumerate(columns):
            last = op if i == len(columns) - 1 else strict
            equal = [f"{c} = {v}" for c, v in zip(columns[:i], literals[:i], strict=True)]
            terms.append("(" + " AND ".join([*equal, f"{column} {last} {literals[i]}"]) + ")")
        return f"({columns[0]} {strict}= {literals[0]} AND ({' OR '.join(terms)}))"

    def compatibility_note(self, arrow_type: Any, source_type: str) -> str | None:
        """TINYINT(1) read as boolean, BIT(n) as an unsigned integer."""
        import pyarrow as pa

        if pa.types.is_boolean(arrow_type) and source_type == "tinyint(1)":
            return "0/1 as boolean; any other value fails the export"
        if source_type.startswith("bit("):
            return "bits as an unsigned integer"
        return None

    def estimate_query(self, query: str) -> str:
        """``EXPLAIN FORMAT=JSON``."""
        return f"EXPLAIN FORMAT=JSON {query}"

    def rows_in_plan(self, plan: Any) -> int | None:
        """The first row estimate in the plan (MySQL or MariaDB layout)."""
        from rivet.sources.mysql.estimates import rows_in

        rows = rows_in(plan)
        return rows if rows >= 0 else None

    def string(self, text: str) -> str:
        """``_utf8mb4 X'...'``: no quotes or backslashes to escape, so ``sql_mode`` cannot change it."""
        return f"_utf8mb4 X'{text.encode('utf-8').hex()}'"

    def binary(self, data: bytes) -> str:
        """``X'...'``."""
        return f"X'{data.hex()}'"

    def timestamp(self, text: str, *, utc: bool) -> str:
        """``TIMESTAMP '...'`` (sessions run in UTC, so an instant is its UTC wall time)."""
        del utc
        return f"TIMESTAMP '{text}'"

    def date(self, text: str) -> str:
        """``DATE '...'``."""
        return f"DATE '{text}'"

    def key_as_number(self, kind: str, column: str) -> str:
        """The key, days since 1970, or microseconds since 1970."""
        if kind == "int":
            return column
        if kind == "date":
            return f"DATEDIFF({column}, '1970-01-01')"
        return f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {column})"
