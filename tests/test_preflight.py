"""rivet check's preflight: verdicts from the real optimizer of PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import MYSQL_URL, pg_url
from tests.outputs import run_rivet, write_config


def _check(tmp_path: Path, source: str, exports: str) -> dict[str, dict]:
    config = write_config(tmp_path, source, exports)
    ran = run_rivet("check", "-c", str(config), "--json")
    assert ran.returncode == 0, ran.stderr
    return {e["export"]: e for e in json.loads(ran.stdout)["exports"]}


@pytest.mark.postgres
def test_postgresql_verdicts(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, k int, pad text)")
    pg.execute(f"INSERT INTO {table} SELECT i, (i * 7919) % 10000, md5(i::text) FROM generate_series(1, 20000) i")
    pg.execute(f"ANALYZE {table}")
    exports = (
        f"  - {{name: by_key, table: {table}, mode: chunked, chunk_column: id, chunk_size: 2000, destination: a}}\n"
        f"  - {{name: by_k, query: 'SELECT * FROM {table}', mode: chunked, chunk_column: k, chunk_size: 2000, "
        "destination: b}\n"
        f"  - {{name: whole, table: {table}, destination: c}}\n"
    )
    found = _check(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', exports)
    by_key = found["by_key"]["preflight"]
    assert found["by_key"]["verdict"] == "ok" and by_key["chunk_scan"].startswith("Index Scan")
    assert abs(by_key["estimated_rows"] - 20000) < 2000 and by_key["chunks"] >= 8 and by_key["pooler"] is None
    assert found["by_k"]["verdict"] == "scan-heavy"
    assert "index the chunk column" in found["by_k"]["preflight"]["reasons"][0]
    assert found["whole"]["verdict"] == "ok" and found["whole"]["preflight"]["scan"].startswith("Seq Scan")

    # The optimizer's statistics say the table is huge: one stream is slow, a lone chunk too long.
    pg.execute(f"UPDATE pg_class SET reltuples = 2e9 WHERE oid = '{table}'::regclass")
    exports = (
        f"  - {{name: whole, table: {table}, destination: c}}\n"
        f"  - {{name: one_chunk, table: {table}, mode: chunked, chunk_column: id, chunk_count: 1, "
        "tuning: {statement_timeout_s: 5}, destination: d}\n"
    )
    found = _check(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', exports)
    assert found["whole"]["verdict"] == "slow" and "chunk it" in found["whole"]["preflight"]["reasons"][0]
    assert found["whole"]["preflight"]["recommended_parallel"] == 4
    assert found["one_chunk"]["verdict"] == "unsafe"
    assert "past statement_timeout_s 5" in " ".join(found["one_chunk"]["preflight"]["reasons"])


@pytest.mark.mysql
def test_mariadb_verdicts(my_table, my_conn, tmp_path):
    from tests.sources import numbers

    table = my_table(
        "CREATE TABLE {t} (id INT PRIMARY KEY, k INT, h CHAR(32));\n"
        f"INSERT INTO {{t}} SELECT i, (i * 7919) % 10000, MD5(i) FROM ({numbers(20000)}) AS n"
    )
    with my_conn.cursor() as cur:
        cur.execute(f"ANALYZE TABLE {table}")
    exports = (
        f"  - {{name: by_key, table: {table}, mode: chunked, chunk_column: id, chunk_size: 2000, destination: a}}\n"
        f"  - {{name: by_k, query: 'SELECT * FROM {table}', mode: chunked, chunk_column: k, chunk_size: 2000, "
        "destination: b}\n"
    )
    found = _check(tmp_path, f'{{type: mysql, url: "{MYSQL_URL}"}}', exports)
    assert found["by_key"]["verdict"] == "ok" and found["by_key"]["preflight"]["chunk_scan"].startswith("range")
    assert found["by_k"]["verdict"] == "scan-heavy" and found["by_k"]["preflight"]["chunk_scan"].startswith("ALL")
    assert found["by_key"]["preflight"]["pooler"] is None


def test_sqlite_exports_are_local(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
    found = _check(tmp_path, "{type: sqlite, path: db.sqlite}", "  - {name: t, table: t, destination: out}\n")
    assert found["t"]["verdict"] == "ok" and found["t"]["preflight"]["scan"] == "a local file"
