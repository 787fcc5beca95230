"""SQLite SQL text."""

from __future__ import annotations

from typing import ClassVar

from rivet.errors import ConfigError
from rivet.sources.dialect import Dialect


class SqliteDialect(Dialect):
    """SQLite: standard literals (it has no backslash escapes), double-quoted identifiers."""

    name: ClassVar[str] = "SQLite"

    def string(self, text: str) -> str:
        """``'...'`` with quotes doubled."""
        if "\x00" in text:
            raise ConfigError("a SQLite text literal cannot hold a NUL character")
        return "'" + text.replace("'", "''") + "'"

    def binary(self, data: bytes) -> str:
        """``X'...'``."""
        return f"X'{data.hex()}'"

    def timestamp(self, text: str, *, utc: bool) -> str:
        """The ISO text, as rivet reads SQLite timestamps."""
        del utc
        return f"'{text}'"

    def date(self, text: str) -> str:
        """The ISO text."""
        return f"'{text}'"

    def key_as_number(self, kind: str, column: str) -> str:
        """SQLite is never chunked."""
        raise ConfigError("SQLite sources are read whole, not in chunks")
