"""One test body for every database: the ``source`` fixture's PostgreSQL, MariaDB and SQLite.

A test written against :class:`Source` creates its tables, changes them and reads them
back through these few methods, so the same body runs on each database; a database
without what the test needs is skipped by capability, never silently passed.
"""

from __future__ import annotations

import collections
import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rivet.sources.registry import capabilities_for

KINDS = ("postgres", "mysql", "sqlite")
# SQL for the integers 1..n (n < 100000) in a column ``i`` on MySQL and MariaDB (no generate_series).
DIGITS = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " + (
    "UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
)


def numbers(n: int) -> str:
    """SQL for the integers 1..n (n < 100000) in a column ``i``, on MySQL and MariaDB alike."""
    return (
        f"SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 1 AS i FROM {DIGITS} a "
        f"CROSS JOIN {DIGITS} b CROSS JOIN {DIGITS} c CROSS JOIN {DIGITS} e CROSS JOIN {DIGITS} f "
        f"WHERE a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d < {n}"
    )


class Source:
    """A database of the test run, with uniquely named tables the test creates through it."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._request = request
        if kind == "postgres":
            self._conn: Any = request.getfixturevalue("pg")
            self._table = request.getfixturevalue("pg_table")
        elif kind == "mysql":
            self._conn = request.getfixturevalue("my_conn")
            self._table = request.getfixturevalue("my_table")
        else:
            self.path = Path(request.getfixturevalue("tmp_path")) / "source.db"
            self._conn = sqlite3.connect(self.path, isolation_level=None)
            request.addfinalizer(self._conn.close)

    def require(self, capability: str) -> None:
        """Skip the test where this database lacks ``capability`` (a SourceCapabilities field)."""
        if not getattr(capabilities_for(self.kind), capability):
            pytest.skip(f"{self.kind} has no {capability}")

    @property
    def block(self) -> dict[str, str]:
        """The ``source:`` block of a config that reads this database."""
        if self.kind == "sqlite":
            return {"type": "sqlite", "path": str(self.path)}
        return {"type": self.kind, "url": self.url}

    @property
    def url(self) -> str:
        """What ``rivet.export`` takes as its source."""
        from tests.conftest import MYSQL_URL, pg_url  # conftest imports this module for its fixture

        return {"postgres": pg_url(), "mysql": MYSQL_URL}.get(self.kind) or f"sqlite:///{self.path}"

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        """Run one statement; its rows, if any."""
        if self.kind == "postgres":
            cur = self._conn.execute(statement)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        if self.kind == "mysql":
            from tests.conftest import my_query

            return my_query(self._conn, statement)
        return [tuple(r) for r in self._conn.execute(statement).fetchall()]

    def rows(self, query: str) -> collections.Counter[tuple[Any, ...]]:
        """The rows of ``query``, counted."""
        return collections.Counter(self.sql(query))

    def numbered_table(self, n: int) -> str:
        """A new table ``(id integer primary key, h text)`` holding ids 1..n, ``h`` a hash of ``id``."""
        if self.kind == "postgres":
            return self._table(
                "CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, " + str(n) + ") AS i"
            )
        if self.kind == "mysql":
            return self._table(
                "CREATE TABLE {t} (id INT PRIMARY KEY, h CHAR(32));\n"
                f"INSERT INTO {{t}} SELECT i, MD5(i) FROM ({numbers(n)}) AS n"
            )
        name = f"numbered_{n}"
        self.sql(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, h TEXT)")
        self.sql(
            f"INSERT INTO {name} WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) "
            "SELECT i, printf('%08x', (i * 2654435761) % 4294967296) FROM c"
        )
        return name

    def changing_table(self) -> str:
        """A new table ``(id primary key, v text, updated_at timestamp)`` holding ids 1..2000, one second apart."""
        if self.kind == "postgres":
            table = self._table("CREATE TABLE {t} (id int PRIMARY KEY, v text, updated_at timestamptz)")
        elif self.kind == "mysql":
            table = self._table("CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(40), updated_at DATETIME(6))")
        else:
            raise NotImplementedError("the changing table lives on a server")
        self.insert_changes(table, 1, 2000)
        return table

    def insert_changes(self, table: str, first: int, last: int) -> None:
        """Add ids ``first``..``last`` to a changing table, ``updated_at`` one second apart from 2024-01-01."""
        if self.kind == "postgres":
            at = "timestamptz '2024-01-01 00:00+00' + i * interval '1 second'"
            self.sql(f"INSERT INTO {table} SELECT i, md5(i::text), {at} FROM generate_series({first}, {last}) i")
        else:
            at = "TIMESTAMP '2024-01-01 00:00:00' + INTERVAL i SECOND"
            self.sql(f"INSERT INTO {table} SELECT i, md5(i), {at} FROM ({numbers(last)}) AS n WHERE i >= {first}")

    # Text keys whose order is the collation's, not the bytes': case, accents, quotes, a backslash,
    # an emoji and trailing spaces (each value is unique under any collation: it holds its row number).
    KEY_PREFIXES = ("Éa", "ea", "EB", "z", "Z", "o'", "ß", "\\", "\U0001f600", " ")

    def keyed_table(self, key: str, n: int) -> tuple[str, list[str]]:
        """A new table keyed by ``key`` (``uuid``, ``text``, ``text_uuid`` or ``int_int``) holding rows
        ``v`` = 1..n, and its key columns (its primary key, in order)."""
        pg = self.kind == "postgres"
        prefix = self._prefix()
        uuid = ("uuid", "gen_random_uuid()") if pg else ("UUID", "UUID()")
        text_type = 'text COLLATE "und-x-icu"' if pg else "VARCHAR(60) COLLATE utf8mb4_general_ci"
        text = f"{prefix} || i || repeat(' ', mod(i, 3))" if pg else f"CONCAT({prefix}, i, REPEAT(' ', MOD(i, 3)))"
        group = f"{prefix} || mod(i, 50)" if pg else f"CONCAT({prefix}, MOD(i, 50))"
        columns = {
            "uuid": [("k", *uuid)],
            "text": [("k", text_type, text)],
            "text_uuid": [("k", text_type, group), ("u", *uuid)],
            "int_int": [("k", "int", "mod(i, 7)"), ("u", "int", "i")],
        }[key]
        names = [c[0] for c in columns]
        defs = ", ".join(f"{name} {sql_type} NOT NULL" for name, sql_type, _ in columns)
        body = f"CREATE TABLE {{t}} ({defs}, v int NOT NULL, PRIMARY KEY ({', '.join(names)}))"
        table = self._table(body if pg else body + " DEFAULT CHARSET utf8mb4")
        rows = f"generate_series(1, {n}) AS i" if pg else f"({numbers(n)}) AS n"
        self.sql(f"INSERT INTO {table} SELECT {', '.join(c[2] for c in columns)}, i FROM {rows}")
        return table, names

    def sql_table(self, *statements: str) -> str:
        """A new table made by ``statements``, each naming it ``{t}``."""
        if self.kind == "mysql":
            return self._table(";\n".join(statements))
        table = self._table(statements[0])
        for statement in statements[1:]:
            self.sql(statement.format(t=table))
        return table

    def _prefix(self) -> str:
        """SQL choosing row ``i``'s key prefix from :attr:`KEY_PREFIXES`."""
        if self.kind == "postgres":
            texts = ", ".join("'" + p.replace("'", "''") + "'" for p in self.KEY_PREFIXES)
            return f"(ARRAY[{texts}])[1 + mod(i, {len(self.KEY_PREFIXES)})]"
        texts = ", ".join("'" + p.replace("\\", "\\\\").replace("'", "''") + "'" for p in self.KEY_PREFIXES)
        return f"ELT(1 + MOD(i, {len(self.KEY_PREFIXES)}), {texts})"

    def noon_table(self, noons: list[Any]) -> str:
        """A new table ``(id, at, unix_at)``: row ``i`` at ``noons[i]`` (UTC), as a timestamp and in unix seconds."""
        if self.kind == "postgres":
            table = self._table("CREATE TABLE {t} (id int, at timestamptz, unix_at bigint)")
            for i, noon in enumerate(noons):
                self._conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)", (i, noon, int(noon.timestamp())))
            return table
        if self.kind == "mysql":
            rows = ", ".join(f"({i}, '{n:%Y-%m-%d %H:%M:%S}', {int(n.timestamp())})" for i, n in enumerate(noons))
            return self._table(
                f"CREATE TABLE {{t}} (id INT, at DATETIME(6), unix_at BIGINT);\nINSERT INTO {{t}} VALUES {rows}"
            )
        raise NotImplementedError("time windows are tested on the servers")

    def skewed_table(self) -> str:
        """A new table ``(k bigint, payload text)``: 95% of the keys in 1..9500, the rest spread up to
        10^12, and 37 rows whose key is NULL."""
        if self.kind == "postgres":
            return self._table(
                "CREATE TABLE {t} AS SELECT CASE WHEN i <= 9500 THEN i::bigint ELSE (i::bigint - 9500) * 2000000000 "
                "END AS k, md5(i::text) AS payload FROM generate_series(1, 10000) AS i "
                "UNION ALL SELECT NULL, 'null-' || i FROM generate_series(1, 37) AS i"
            )
        if self.kind == "mysql":
            return self._table(
                "CREATE TABLE {t} (k BIGINT, payload VARCHAR(40));\n"
                "INSERT INTO {t} SELECT CASE WHEN i <= 9500 THEN i ELSE (i - 9500) * 2000000000 END, MD5(i) "
                f"FROM ({numbers(10000)}) AS n;\n"
                f"INSERT INTO {{t}} SELECT NULL, CONCAT('null-', i) FROM ({numbers(37)}) AS n"
            )
        raise NotImplementedError("SQLite reads in one stream: no chunk keys to skew")

    def slowly(self, column: str) -> str:
        """An expression that sleeps 0.2 ms for each row a chunk outputs (planning never evaluates it)."""
        if self.kind == "postgres":
            return f"{self._request.getfixturevalue('slow')}({column}, 0.0002)"
        if self.kind == "mysql":
            return "SLEEP(0.0002)"
        raise NotImplementedError("SQLite reads in one stream: no chunk to slow down")

    def stamped_table(self) -> str:
        """A new empty table ``(id int, updated_at)``, ``updated_at`` a microsecond timestamp (timestamptz on
        PostgreSQL, DATETIME(6) on MySQL); :meth:`stamp` writes its values."""
        zoned = self.kind == "postgres"
        return self._table(f"CREATE TABLE {{t}} (id int, updated_at {'timestamptz' if zoned else 'DATETIME(6)'})")

    def stamp(self, utc: str | None) -> str:
        """The SQL literal of a stamped table's ``updated_at`` at ``utc`` (``YYYY-MM-DD HH:MM:SS[.ffffff]``)."""
        if utc is None:
            return "NULL"
        return f"timestamptz '{utc}+00'" if self.kind == "postgres" else f"TIMESTAMP '{utc}'"

    # A time key's column type on each database: a date, a timestamp, and one that carries its zone.
    TIME_TYPES: ClassVar[dict[str, dict[str, str]]] = {
        "postgres": {"date": "date", "timestamp": "timestamp", "zoned": "timestamptz"},
        "mysql": {"date": "DATE", "timestamp": "DATETIME(6)", "zoned": "TIMESTAMP(6) NULL"},
    }

    def timed_table(self, key: str) -> str:
        """A new table ``(id, at)``: ids 1..3000 ``at`` 37 minutes apart from 2024-02-27 13:00 UTC, and
        id 0 at NULL; ``key`` is ``date``, ``timestamp`` or ``zoned``."""
        sql_type = self.TIME_TYPES[self.kind][key]
        if self.kind == "postgres":
            return self._table(
                "CREATE TABLE {t} AS SELECT i AS id, "
                f"(timestamptz '2024-02-27 13:00+00' + i * interval '37 minutes')::{sql_type}"
                " AS at FROM generate_series(1, 3000) AS i UNION ALL SELECT 0, NULL"
            )
        return self._table(
            f"CREATE TABLE {{t}} (id INT, at {sql_type});\n"
            "INSERT INTO {t} SELECT i, TIMESTAMP '2024-02-27 13:00:00' + INTERVAL (i * 37) MINUTE "
            f"FROM ({numbers(3000)}) AS n;\n"
            "INSERT INTO {t} VALUES (0, NULL)"
        )


SERVERS = [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)]


@pytest.fixture(params=[*SERVERS, "sqlite"])
def source(request: pytest.FixtureRequest) -> Source:
    """Each database in turn: PostgreSQL, MariaDB and SQLite."""
    return Source(request.param, request)


@pytest.fixture(params=SERVERS)
def database_server(request: pytest.FixtureRequest) -> Source:
    """Each database server in turn: PostgreSQL and MariaDB."""
    return Source(request.param, request)
