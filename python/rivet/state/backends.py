"""Where the state store keeps its tables: a SQLite file beside the config, or PostgreSQL.

Both take the same SQL (``?`` placeholders, ``ON CONFLICT`` upserts) and the same
migrations. A write transaction holds the whole store: ``BEGIN IMMEDIATE`` in SQLite,
a transaction-level advisory lock in PostgreSQL, so machines that share one state
database commit one at a time, as processes sharing one file do.

``RIVET_STATE_URL=postgresql://...`` selects PostgreSQL; its tables live in the schema
``rivet_state`` (created on first use), so they never mix with other tables. Another
schema is named by ``RIVET_STATE_SCHEMA`` or the URL's ``schema=`` parameter (teams that
must not share one store each take their own).
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from rivet.core.redact import redact_url
from rivet.errors import StateError
from rivet.state import original

STATE_FILE = ".rivet_state.db"
STATE_URL_VARIABLE = "RIVET_STATE_URL"
PG_SCHEMA = "rivet_state"
SCHEMA_VARIABLE = "RIVET_STATE_SCHEMA"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Any constant: the one advisory lock every rivet write transaction of a state database takes.
PG_WRITE_LOCK = 0x72697665


class Backend:
    """A connection to the store's tables, in autocommit mode between explicit transactions."""

    where: str  # for messages, without credentials
    errors: tuple[type[Exception], ...]  # what the driver raises
    conn: Any
    # SQL for the database's clock in seconds since 1970: every machine sharing it reads one clock.
    clock: str

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """Run one statement (``?`` placeholders); a cursor."""
        raise NotImplementedError

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> Any:
        """Run one statement per row."""
        raise NotImplementedError

    def begin(self) -> None:
        """Start a write transaction that excludes every other writer."""
        raise NotImplementedError

    def commit(self) -> None:
        """Commit the transaction."""
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        """Roll the transaction back, if one is open.

        An interrupt (Ctrl-C, SIGTERM) may land just after BEGIN or COMMIT: it must stay an
        interrupt, not become an error of its own.
        """
        if self.in_transaction():
            self.conn.execute("ROLLBACK")

    def in_transaction(self) -> bool:
        """Whether a transaction is open on the connection."""
        raise NotImplementedError

    def version(self) -> int:
        """The schema version (0: empty)."""
        raise NotImplementedError

    def set_version(self, version: int) -> None:
        """Record the schema version (inside the migrating transaction)."""
        raise NotImplementedError

    def ddl(self, script: str) -> list[str]:
        """A migration's statements, one by one (a script runner would commit mid-migration)."""
        return [s for s in script.split(";") if s.strip()]

    def original_tables(self) -> set[str]:
        """The original rivet's state tables found where it kept them (empty: none)."""
        raise NotImplementedError

    def set_aside(self, tables: set[str]) -> None:
        """Make room for rivet's tables beside the original's (inside the migrating transaction)."""

    def original_rows(self, name: str) -> list[dict[str, Any]]:
        """Every row of the original's table ``name`` ([] when it has none)."""
        raise NotImplementedError

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def state_location(base_dir: Path) -> str | Path:
    """Where the state of a config in ``base_dir`` lives: ``RIVET_STATE_URL``, else the file beside it."""
    url = os.environ.get(STATE_URL_VARIABLE, "").strip()
    return url or base_dir / STATE_FILE


def is_postgres_url(location: str | Path) -> bool:
    """Whether ``location`` names a PostgreSQL state database."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


class SqliteBackend(Backend):
    """A SQLite file in WAL mode, readable by its owner only."""

    errors: tuple[type[Exception], ...] = (sqlite3.DatabaseError,)
    clock = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            _create_private(path)
            self.conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as e:
            raise StateError(f"state store {path}: {e}") from e

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """Run one statement."""
        return self.conn.execute(sql, args)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> Any:
        """Run one statement per row."""
        return self.conn.executemany(sql, rows)

    def begin(self) -> None:
        """Take the file's write lock now, not at the first write."""
        self.conn.execute("BEGIN IMMEDIATE")

    def in_transaction(self) -> bool:
        """SQLite says so itself."""
        return bool(self.conn.in_transaction)

    def version(self) -> int:
        """``PRAGMA user_version``."""
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, version: int) -> None:
        """Set ``PRAGMA user_version``."""
        self.conn.execute(f"PRAGMA user_version = {int(version)}")

    def _tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def original_tables(self) -> set[str]:
        """The original's tables in a file rivet has not opened yet."""
        return self._tables() & set(original.ORIGINAL_TABLES)

    def set_aside(self, tables: set[str]) -> None:
        """Rename the original's tables (some names are rivet's own)."""
        for table in sorted(tables):
            self.conn.execute(f'ALTER TABLE "{table}" RENAME TO "{original.PREFIX}{table}"')

    def original_rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of ``original_<name>``."""
        table = f"{original.PREFIX}{name}"
        return self._rows(f'SELECT * FROM "{table}"') if table in self._tables() else []


class PostgresBackend(Backend):
    """A PostgreSQL database shared by every machine that runs the exports."""

    clock = "extract(epoch FROM clock_timestamp())::float8"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise StateError(
                f"{STATE_URL_VARIABLE} names a PostgreSQL database, which needs the psycopg driver: "
                'pip install "rivet[state-postgres]"'
            ) from None
        url, schema = _schema_of(url)
        self.where = redact_url(url) + ("" if schema == PG_SCHEMA else f" (schema {schema})")
        self.errors = (psycopg.Error,)
        try:
            self.conn = psycopg.connect(url, autocommit=True, application_name="rivet-state")
            self.conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            self.conn.execute(f'SET search_path TO "{schema}"')
            self.conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        except psycopg.Error as e:
            raise StateError(f"state store {self.where}: {e}") from None

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """Run one statement."""
        return self.conn.execute(_placeholders(sql), args)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> Any:
        """Run one statement per row."""
        cur = self.conn.cursor()
        cur.executemany(_placeholders(sql), rows)
        return cur

    def begin(self) -> None:
        """Begin, and wait for every other rivet writer of this database to commit."""
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_WRITE_LOCK,))

    def in_transaction(self) -> bool:
        """Anything but idle: a transaction open, failed or in doubt."""
        from psycopg.pq import TransactionStatus

        return bool(self.conn.info.transaction_status != TransactionStatus.IDLE)

    def version(self) -> int:
        """The row of ``schema_version``."""
        row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0) if row else 0

    def set_version(self, version: int) -> None:
        """Replace the row of ``schema_version``."""
        self.conn.execute("DELETE FROM schema_version")
        self.conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    def original_tables(self) -> set[str]:
        """The original's tables in the database's ``public`` schema, where it kept them."""
        found = {
            r[0]
            for r in self.conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        }
        # Only its cursor table tells the original's state from another application's tables.
        return found & set(original.ORIGINAL_TABLES) if "export_state" in found else set()

    def original_rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of ``public.<name>``, left where they are."""
        exists = self.conn.execute("SELECT to_regclass(%s)", (f'public."{name}"',)).fetchone()
        return self._rows(f'SELECT * FROM public."{name}"') if exists and exists[0] else []

    def ddl(self, script: str) -> list[str]:
        """The migration in PostgreSQL's types: SQLite's INTEGER is 64-bit, its REAL a double."""
        script = re.sub(r"\bINTEGER PRIMARY KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", script)
        script = re.sub(r"\bINTEGER\b", "BIGINT", script)
        script = re.sub(r"\bREAL\b", "DOUBLE PRECISION", script)
        return super().ddl(script.replace("WITHOUT ROWID", ""))


def _schema_of(url: str) -> tuple[str, str]:
    """The URL without rivet's ``schema=`` parameter, and the schema: that, ``RIVET_STATE_SCHEMA``, or the default."""
    base, question, query = url.partition("?")
    pairs = [p for p in query.split("&") if p] if question else []
    named = [p.partition("=")[2] for p in pairs if p.partition("=")[0] == "schema"]
    kept = [p for p in pairs if p.partition("=")[0] != "schema"]
    schema = (named[-1] if named else "") or os.environ.get(SCHEMA_VARIABLE, "").strip() or PG_SCHEMA
    if not _SCHEMA_NAME.match(schema):
        raise StateError(
            f"state schema {schema!r} is not a schema name rivet takes (lower case letters, digits and '_', "
            "starting with a letter or '_', at most 63)"
        )
    return base + ("?" + "&".join(kept) if kept else ""), schema


def _placeholders(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (the store's SQL holds no other ``?`` or ``%``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def open_backend(location: str | Path) -> Backend:
    """The backend for a file path or a ``postgresql://`` URL."""
    if is_postgres_url(location):
        return PostgresBackend(str(location))
    return SqliteBackend(Path(location))


def _create_private(path: Path) -> None:
    """Create the state file readable by its owner only (it names hosts, queries and files)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return
    except OSError as e:
        raise sqlite3.DatabaseError(f"cannot create {path}: {e.strerror or e}") from e
    os.close(fd)
