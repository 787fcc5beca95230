"""PostgreSQL SQL text."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from rivet.errors import ConfigError
from rivet.sources.dialect import Dialect


class PostgresDialect(Dialect):
    """PostgreSQL: escape-string literals, double-quoted identifiers."""

    name: ClassVar[str] = "PostgreSQL"
    begin_read_only: ClassVar[str | None] = "BEGIN READ ONLY"

    def string(self, text: str) -> str:
        """``E'...'`` with backslashes and quotes escaped: the same text whatever ``standard_conforming_strings``."""
        if "\x00" in text:
            raise ConfigError("PostgreSQL text cannot hold a NUL character; it has no literal")
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"

    def binary(self, data: bytes) -> str:
        """``decode('<hex>', 'hex')``: no escape syntax involved."""
        return f"decode('{data.hex()}', 'hex')"

    def timestamp(self, text: str, *, utc: bool) -> str:
        """``'...+00'::timestamptz`` or ``'...'::timestamp``."""
        return f"'{text}+00'::timestamptz" if utc else f"'{text}'::timestamp"

    def date(self, text: str) -> str:
        """``'...'::date``."""
        return f"'{text}'::date"

    def float(self, value: float) -> str:
        """Finite floats as themselves; NaN and infinities as float8 constants."""
        if math.isnan(value):
            return "'NaN'::float8"
        if math.isinf(value):
            return "'Infinity'::float8" if value > 0 else "'-Infinity'::float8"
        return f"{value!r}::float8"

    def key_as_number(self, kind: str, column: str) -> str:
        """The key, days since 1970, or microseconds since 1970 (as bigint)."""
        if kind == "int":
            return column
        if kind == "date":
            return f"({column} - DATE '1970-01-01')"
        return f"floor(extract(epoch FROM {column}) * 1000000)::bigint"

    def primary_key_query(self, qualified: str) -> str:
        """The primary key columns from ``pg_index``, in key order."""
        return (
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            f"AND a.attnum = ANY(i.indkey) WHERE i.indrelid = {self.relation(qualified)} AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)"
        )

    def estimate_query(self, query: str) -> str:
        """``EXPLAIN (FORMAT JSON)``."""
        return f"EXPLAIN (FORMAT JSON) {query}"

    def rows_in_plan(self, plan: Any) -> int | None:
        """``Plan Rows`` of the top node."""
        try:
            return int(plan[0]["Plan"]["Plan Rows"])
        except (IndexError, KeyError, ValueError, TypeError):
            return None

    def relation(self, qualified: str) -> str:
        """``qualified`` as a ``regclass`` (the table's oid), for catalog queries."""
        return f"{self.string(qualified)}::regclass"
