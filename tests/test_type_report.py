"""``rivet check --type-report``: golden reports for PostgreSQL, MySQL and SQLite, and the exit codes.

Set RIVET_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MYSQL_URL, pg_url
from tests.outputs import run_rivet

GOLDEN = Path(__file__).parent / "golden"

PG_TABLE = """CREATE TABLE {t} (id integer PRIMARY KEY, n numeric(12,3), n30 numeric(30,12), free numeric,
    txt text, vc varchar(20), tz timestamptz, ts timestamp, d date, tm time, iv interval, j jsonb, u uuid,
    arr integer[], by bytea, b boolean, f real, pt point)"""
MY_TABLE = """CREATE TABLE {t} (id INT PRIMARY KEY, b TINYINT(1), ub BIGINT UNSIGNED, d DECIMAL(65,30),
    d2 DECIMAL(12,2), dt DATETIME(6), ts TIMESTAMP(6) NULL, tm TIME, y YEAR, bt BIT(10), e ENUM('a','b'),
    vc VARCHAR(10), bn VARBINARY(4), f FLOAT, g POINT)"""


def check(tmp_path: Path, source: str, table: str, *flags: str, mode: str = "chunked") -> subprocess.CompletedProcess:
    chunking = "    mode: chunked\n    chunk_column: id\n" if mode == "chunked" else ""
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f"source:\n{source}\nexports:\n  - name: zoo\n    table: {table}\n{chunking}    destination: out\n"
    )
    return run_rivet("check", "-c", str(config), *flags)


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RIVET_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.postgres
def test_postgres_type_report(pg_table, tmp_path):
    t = pg_table(PG_TABLE)
    source = f'  type: postgres\n  url: "{pg_url()}"\n  engine: auto'
    proc = check(tmp_path, source, t, "--type-report")
    assert proc.returncode == 3, proc.stderr  # the point column is refused
    assert_golden("type_report_postgres.txt", proc.stdout)
    report = json.loads(check(tmp_path, source, t, "--json").stdout)["exports"][0]
    by_name = {c["column"]: c for c in report["columns"]}
    assert by_name["pt"]["fidelity"] == "refused" and "point" in by_name["pt"]["source_type"]
    assert by_name["n30"]["arrow_type"] == "decimal128(30, 12)" and by_name["n30"]["fidelity"] == "exact"
    assert report["engine"] == "native" and not report["exact"]


@pytest.mark.mysql
def test_mysql_type_report(my_table, tmp_path):
    t = my_table(MY_TABLE)
    source = f'  type: mysql\n  url: "{MYSQL_URL}"\n  engine: auto'
    proc = check(tmp_path, source, t, "--type-report")
    assert proc.returncode == 3, proc.stderr  # the geometry column is refused
    assert_golden("type_report_mysql.txt", proc.stdout)


def test_sqlite_type_report(tmp_path):
    db = tmp_path / "s.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE zoo (id INTEGER, r REAL, t TEXT, b BLOB, n NUMERIC(10,2), d DATE, ts TIMESTAMP)")
    source = f"  type: sqlite\n  path: {db}\n  engine: auto"
    proc = check(tmp_path, source, "zoo", "--type-report", mode="full")
    assert proc.returncode == 0, proc.stderr
    assert_golden("type_report_sqlite.txt", proc.stdout)


@pytest.mark.postgres
def test_strict_fails_unless_every_column_is_exact(pg_table, tmp_path):
    exact = pg_table("CREATE TABLE {t} (id integer PRIMARY KEY, n numeric(10,2), t text)")
    compatible = pg_table("CREATE TABLE {t} (id integer PRIMARY KEY, j jsonb)")
    source = f'  type: postgres\n  url: "{pg_url()}"'
    ok = check(tmp_path, source, exact, "--strict")
    assert ok.returncode == 0, ok.stderr
    assert "exact" in ok.stdout
    strict = check(tmp_path, source, compatible, "--strict")
    assert strict.returncode == 1 and "--strict: some columns are not exact" in strict.stderr
    assert check(tmp_path, source, compatible).returncode == 0
