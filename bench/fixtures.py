"""Benchmark tables in PostgreSQL, built once per scale and reused while their row counts match."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

HERE = Path(__file__).parent
BASE_URL = os.environ.get("RIVET_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
MYSQL_BASE_URL = os.environ.get("RIVET_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306")
# The MariaDB lineitem is smaller: the 2 M rows the peer measurements used.
MYSQL_LINEITEM = {"full": 2_000_000, "medium": 800_000, "small": 200_000, "tiny": 20_000}


@dataclass(frozen=True)
class Scale:
    """Row counts of the three benchmark tables."""

    name: str
    lineitem: int
    content_items: int
    events: int

    @property
    def database(self) -> str:
        return "rivet_bench" if self.name == "full" else f"rivet_bench_{self.name}"

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.database}"

    @property
    def mysql_url(self) -> str:
        return f"{MYSQL_BASE_URL}/{self.database}"

    def rows(self, table: str) -> int:
        return int(getattr(self, table))


SCALES = {
    "full": Scale("full", 5_000_000, 2_000_000, 10_000_000),
    "medium": Scale("medium", 2_000_000, 800_000, 4_000_000),
    "small": Scale("small", 500_000, 200_000, 1_000_000),
    "tiny": Scale("tiny", 50_000, 20_000, 100_000),
}
TABLES = ("lineitem", "content_items", "events")


def _statements(sql: str, variables: dict[str, int]) -> list[str]:
    for name, value in variables.items():
        sql = sql.replace(f":{name}", str(value))
    sql = re.sub(r"^--.*$", "", sql, flags=re.MULTILINE)
    return [s.strip() for s in sql.split(";\n") if s.strip()]


def _run_script(conn: psycopg.Connection, path: Path, variables: dict[str, int]) -> None:
    for statement in _statements(path.read_text(), variables):
        conn.execute(statement)


def _current_rows(conn: psycopg.Connection, table: str) -> int | None:
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else None


def ensure_tables(scale: Scale, tables: tuple[str, ...] = TABLES) -> None:
    """Create the scale's database and any table whose row count differs."""
    with psycopg.connect(f"{BASE_URL}/postgres", autocommit=True) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scale.database,)).fetchone()
        if not found:
            admin.execute(f'CREATE DATABASE "{scale.database}"')
    with psycopg.connect(scale.url, autocommit=True) as conn:
        if "lineitem" in tables and _current_rows(conn, "lineitem") != scale.lineitem:
            print(f"building lineitem ({scale.lineitem:,} rows) in {scale.database}", flush=True)
            _run_script(conn, HERE / "fixtures_lineitem.sql", {"rows": scale.lineitem})
        wanted = {"content_items": scale.content_items, "events": scale.events}
        if any(t in tables and _current_rows(conn, t) != wanted[t] for t in wanted):
            print(f"building content_items and events in {scale.database}", flush=True)
            _run_script(
                conn,
                HERE / "fixtures_pg.sql",
                {"content_rows": scale.content_items, "event_rows": scale.events},
            )


def _mysql_connect(database: str | None = None):  # pymysql is imported lazily: no annotation
    from urllib.parse import urlsplit

    import pymysql

    u = urlsplit(MYSQL_BASE_URL)
    return pymysql.connect(
        host=u.hostname,
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        database=database,
        autocommit=True,
    )


# The MariaDB tables the benchmark builds, in build order (lineitem_uuid is made from lineitem).
MYSQL_SCRIPTS = {"lineitem": "fixtures_mysql.sql", "lineitem_uuid": "fixtures_mysql_uuid.sql"}


def ensure_mysql_lineitem(scale: Scale, tables: tuple[str, ...] = ("lineitem",)) -> None:
    """Create the MariaDB bench database and its lineitem (and lineitem_uuid, when asked for) where
    its row count differs."""
    rows = MYSQL_LINEITEM[scale.name]
    with _mysql_connect() as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{scale.database}`")
    with _mysql_connect(scale.database) as conn, conn.cursor() as cur:
        for table, script in MYSQL_SCRIPTS.items():
            if table != "lineitem" and table not in tables:
                continue
            cur.execute(
                "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (table,),
            )
            have = None
            if cur.fetchone()[0]:
                cur.execute(f"SELECT count(*) FROM {table}")
                have = cur.fetchone()[0]
            if have != rows:
                print(f"building {table} ({rows:,} rows) in MariaDB {scale.database}", flush=True)
                for statement in _statements((HERE / script).read_text(), {"rows": rows}):
                    cur.execute(statement)
