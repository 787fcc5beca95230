"""What every SQL dialect provides: identifiers, literals, and the keys chunks are cut on.

Only a Dialect writes SQL text from a value. Values come from the data (a cursor value
is user data) and from the config, so every literal is built to mean exactly the value
whatever the server's settings (PostgreSQL's ``standard_conforming_strings``, MySQL's
``sql_mode``), or refused.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from rivet.errors import ConfigError
from rivet.sources import names

EPOCH = dt.datetime(1970, 1, 1)
EPOCH_DATE = dt.date(1970, 1, 1)
# The text a date or timestamp literal may hold: what isoformat() writes, nothing else.
_TEMPORAL_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d{1,6})?)?$")
# Key kinds a chunk column may have: integers, dates, timestamps.
KEY_KINDS = ("int", "date", "timestamp", "timestamptz")


class Dialect(ABC):
    """SQL text for one kind of source."""

    name: ClassVar[str]
    # The statement that opens a read-only transaction (None: the source has no such transaction).
    begin_read_only: ClassVar[str | None] = None

    # The character that quotes an identifier, and how many parts a table name may have.
    quote_char: ClassVar[str] = '"'
    max_name_parts: ClassVar[int] = 3

    def quote(self, identifier: str) -> str:
        """``identifier`` quoted, embedded quotes doubled."""
        q = self.quote_char
        return q + identifier.replace(q, q + q) + q

    def table_name(self, table: str) -> tuple[str, ...]:
        """The exact names of ``[schema.]table`` as the config writes it (bare parts exact, quoted parts as SQL)."""
        return names.parse(table, self.quote_char, self.max_name_parts)

    def qualified(self, table: str) -> str:
        """``[schema.]table`` from the config, each part quoted."""
        return ".".join(self.quote(p) for p in self.table_name(table))

    def table_text(self, parts: tuple[str, ...]) -> str:
        """How a config writes the table of exact names ``parts`` (what :meth:`table_name` reads back)."""
        return names.written(parts, self.quote_char)

    @abstractmethod
    def string(self, text: str) -> str:
        """A string literal that is ``text`` exactly, whatever the session settings."""

    @abstractmethod
    def binary(self, data: bytes) -> str:
        """A binary-string literal."""

    @abstractmethod
    def timestamp(self, text: str, *, utc: bool) -> str:
        """A timestamp literal from ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (``utc``: an instant in UTC)."""

    @abstractmethod
    def date(self, text: str) -> str:
        """A date literal from ``YYYY-MM-DD``."""

    def float(self, value: float) -> str:
        """A float literal; NaN and infinities only where the dialect has them."""
        if not math.isfinite(value):
            raise ConfigError(f"{self.name} has no literal for the float {value}")
        return repr(value)

    def literal(self, value: Any) -> str:
        """``value`` as SQL the source compares correctly with a column of its type."""
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, decimal.Decimal):
            if not value.is_finite():
                raise ConfigError(f"{self.name} has no decimal literal for {value}")
            return str(value)
        if isinstance(value, float):
            return self.float(value)
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                text = value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
                return self.timestamp(_checked(text), utc=True)
            return self.timestamp(_checked(value.isoformat(sep=" ")), utc=False)
        if isinstance(value, dt.date):
            return self.date(_checked(value.isoformat()))
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, bytes):
            return self.binary(value)
        raise ConfigError(f"a {type(value).__name__} value has no SQL literal")

    def compatibility_note(self, arrow_type: Any, source_type: str) -> str | None:
        """Why a column is read as another kind of type with every value kept (None: it is not)."""
        del arrow_type, source_type
        return None

    def estimate_query(self, query: str) -> str | None:
        """SQL whose first value is the optimizer's plan of ``query`` as JSON (None: no estimates)."""
        del query
        return None

    def rows_in_plan(self, plan: Any) -> int | None:
        """The row estimate in a JSON plan from :meth:`estimate_query`."""
        del plan
        return None

    def primary_key_query(self, qualified: str) -> str:
        """SQL listing the primary key columns of a table, in key order."""
        raise ConfigError(f"{self.name} tables are not chunked by their primary key")

    # -- chunk keys ------------------------------------------------------------------------

    def key_compare(self, columns: list[str], literals: list[str], op: str) -> str:
        """``(columns) op (literals)`` in row-value order, ``op`` ``>=`` or ``<``: a range of an index."""
        if len(columns) == 1:
            return f"{columns[0]} {op} {literals[0]}"
        return f"({', '.join(columns)}) {op} ({', '.join(literals)})"

    @abstractmethod
    def key_as_number(self, kind: str, column: str) -> str:
        """SQL turning a key into an integer: itself, days or microseconds since 1970."""

    def key_literal(self, kind: str, n: int) -> str:
        """The literal of the key whose integer form is ``n``."""
        if kind == "int":
            return str(int(n))
        if kind == "date":
            return self.literal(EPOCH_DATE + dt.timedelta(days=n))
        value = EPOCH + dt.timedelta(microseconds=n)
        return self.literal(value.replace(tzinfo=dt.timezone.utc) if kind == "timestamptz" else value)


def _checked(text: str) -> str:
    if not _TEMPORAL_TEXT.match(text):
        raise ConfigError(f"'{text}' is not a date or timestamp rivet can write as SQL")
    return text


@dataclass(frozen=True)
class KeyKind:
    """How a key column maps to integers (for bucketing) and back to SQL literals."""

    name: str  # int, date, timestamp, timestamptz
    dialect: Dialect

    def quote(self, column: str) -> str:
        """The column name, quoted for the dialect."""
        return self.dialect.quote(column)

    def as_number(self, column: str) -> str:
        """SQL turning the key into an integer: itself, days or microseconds since 1970."""
        return self.dialect.key_as_number(self.name, column)

    def literal(self, n: int) -> str:
        """The SQL literal of the key whose integer form is ``n``."""
        return self.dialect.key_literal(self.name, n)

    def day_unit(self) -> int:
        """Integer units in one day."""
        return 1 if self.name == "date" else 86_400_000_000
