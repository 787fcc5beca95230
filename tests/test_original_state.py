"""A state file of the original rivet tool: taken over, its incremental cursors continued."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import textwrap

import psycopg
import pyarrow.parquet as pq
import pytest

from rivet.state import STATE_URL_VARIABLE
from tests.conftest import pg_url, visible_parts
from tests.outputs import run_rivet

# The original's tables as its reference describes them: v0.5.x has file_manifest; later versions
# renamed it file_log (a name rivet uses too) and track their schema version in a table.
V05_SCHEMA = """
CREATE TABLE export_state (export_name TEXT PRIMARY KEY, last_cursor_value TEXT, last_run_at TEXT);
CREATE TABLE export_metrics (id INTEGER PRIMARY KEY, export_name TEXT, run_at TEXT, duration_ms INTEGER,
    total_rows INTEGER, status TEXT);
CREATE TABLE file_manifest (id INTEGER PRIMARY KEY, run_id TEXT, export_name TEXT, file_name TEXT,
    row_count INTEGER, bytes INTEGER, format TEXT, compression TEXT, created_at TEXT);
CREATE TABLE chunk_run (run_id TEXT PRIMARY KEY, export_name TEXT, plan_hash TEXT, status TEXT);
"""
V06_SCHEMA = V05_SCHEMA.replace("file_manifest", "file_log") + "CREATE TABLE schema_version (version INTEGER);"


@pytest.mark.postgres
@pytest.mark.parametrize("schema", [V05_SCHEMA, V06_SCHEMA], ids=["v0.5", "v0.6+"])
def test_an_incremental_export_continues_from_the_original_tools_cursor(pg, pg_table, tmp_path, schema):
    table = pg_table("CREATE TABLE {t} (id int, v text)")
    pg.execute(f"INSERT INTO {table} SELECT g, 'v' || g FROM generate_series(1, 10) g")
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        conn.executescript(schema)
        conn.execute("INSERT INTO export_state VALUES ('orders', '7', '2026-11-30T10:00:00Z')")
        conn.execute("INSERT INTO export_state VALUES ('never_ran', NULL, NULL)")
        conn.execute("INSERT INTO export_metrics (export_name, status) VALUES ('orders', 'success')")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - name: orders
                query: SELECT * FROM {table}
                mode: incremental
                cursor_column: id
                destination: out
            """
        )
    )

    def run() -> subprocess.CompletedProcess[str]:
        return run_rivet("run", "-c", str(config))

    first = run()
    assert first.returncode == 0, first.stderr
    assert "written by the original rivet: 1 incremental cursor(s), 1 run(s)" in first.stderr
    [part] = visible_parts(tmp_path / "out")
    # Strictly after the original's cursor: the rows up to 7 were exported by the original.
    assert sorted(pq.read_table(part)["id"].to_pylist()) == [8, 9, 10]
    pg.execute(f"INSERT INTO {table} VALUES (11, 'v11')")
    second = run()
    assert second.returncode == 0, second.stderr
    assert "original rivet" not in second.stderr, "the notice is printed once"
    ids = sorted(i for p in visible_parts(tmp_path / "out") for i in pq.read_table(p)["id"].to_pylist())
    assert ids == [8, 9, 10, 11]
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        kept = conn.execute("SELECT export_name, last_cursor_value FROM original_export_state").fetchall()
    assert {"original_export_state", "original_export_metrics", "original_chunk_run"} <= tables
    assert ("original_file_log" if schema is V06_SCHEMA else "original_file_manifest") in tables
    assert sorted(kept) == [("never_ran", None), ("orders", "7")]


@pytest.mark.postgres
def test_a_timestamp_cursor_without_an_offset_is_read_as_utc(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, at timestamptz)")
    pg.execute(
        f"INSERT INTO {table} SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour' "
        "FROM generate_series(1, 6) g"
    )
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        conn.executescript(V05_SCHEMA)
        # The original wrote timestamps without an offset; it meant UTC (04:00 is row 4).
        conn.execute("INSERT INTO export_state VALUES ('orders', '2024-01-01T04:00:00.000000', NULL)")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\n'
        f"exports:\n  - {{name: orders, table: {table}, mode: incremental, cursor_column: at, destination: out}}\n"
    )
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    [part] = visible_parts(tmp_path / "out")
    assert sorted(pq.read_table(part)["id"].to_pylist()) == [5, 6]


# The original's later tables with every column its reference lists (v0.6+: file_log, chunk tasks).
HISTORY = """
CREATE TABLE export_state (export_name TEXT PRIMARY KEY, last_cursor_value TEXT, last_run_at TEXT);
CREATE TABLE export_metrics (id INTEGER PRIMARY KEY, export_name TEXT, run_at TEXT, duration_ms INTEGER,
    total_rows INTEGER, peak_rss_mb REAL, status TEXT, error_message TEXT, tuning_profile TEXT, format TEXT,
    mode TEXT, files_produced INTEGER, bytes_written INTEGER, retries INTEGER, validated INTEGER,
    schema_changed INTEGER, run_id TEXT);
CREATE TABLE file_log (id INTEGER PRIMARY KEY, run_id TEXT, export_name TEXT, file_name TEXT,
    row_count INTEGER, bytes INTEGER, format TEXT, compression TEXT, created_at TEXT);
CREATE TABLE chunk_run (run_id TEXT PRIMARY KEY, export_name TEXT, plan_hash TEXT, status TEXT,
    max_chunk_attempts INTEGER, created_at TEXT, updated_at TEXT);
CREATE TABLE chunk_task (run_id TEXT, chunk_index INTEGER, start_key TEXT, end_key TEXT, status TEXT,
    attempts INTEGER, last_error TEXT, rows_written INTEGER, file_name TEXT, updated_at TEXT,
    UNIQUE (run_id, chunk_index));
CREATE TABLE schema_version (version INTEGER);
INSERT INTO schema_version VALUES (8);
INSERT INTO export_metrics (export_name, run_at, duration_ms, total_rows, peak_rss_mb, status, mode,
    files_produced, bytes_written, run_id) VALUES
    ('big', '2026-11-01T00:00:00Z', 4200, 300, 88.5, 'success', 'chunked', 2, 9000, 'big_20261101'),
    ('big', '2026-11-02T00:00:00Z', 100, 0, 50.0, 'failed', 'chunked', 0, 0, 'big_20261102');
INSERT INTO file_log (run_id, export_name, file_name, row_count, bytes, format, compression, created_at) VALUES
    ('big_20261101', 'big', 'big_20261101_chunk0.parquet', 200, 6000, 'parquet', 'zstd', '2026-11-01T00:00:01Z'),
    ('big_20261101', 'big', 'big_20261101_chunk1.parquet', 100, 3000, 'parquet', 'zstd', '2026-11-01T00:00:02Z');
INSERT INTO chunk_run VALUES ('big_20261101', 'big', 'h1', 'completed', 3, '2026-11-01T00:00:00Z', NULL),
    ('big_20261102', 'big', 'h1', 'in_progress', 3, '2026-11-02T00:00:00Z', NULL);
INSERT INTO chunk_task VALUES
    ('big_20261101', 0, '1', '200', 'completed', 1, NULL, 200, 'big_20261101_chunk0.parquet', NULL),
    ('big_20261101', 1, '201', '300', 'completed', 1, NULL, 100, 'big_20261101_chunk1.parquet', NULL),
    ('big_20261102', 0, '1', '200', 'failed', 3, 'connection reset', NULL, NULL, NULL);
"""


def _rivet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_rivet(*args, env={**os.environ, **(env or {})})


def _assert_history_carried(config) -> None:
    metrics = json.loads(_rivet("metrics", "-c", str(config), "-e", "big", "--json").stdout)["runs"]
    assert [(r["run_id"], r["status"], r["rows"]) for r in metrics] == [
        ("big_20261102", "failed", 0),
        ("big_20261101", "success", 300),
    ]
    files = json.loads(_rivet("state", "files", "-c", str(config), "-e", "big", "--json").stdout)["files"]
    assert sorted((f["url"], f["rows"]) for f in files) == [
        ("big_20261101_chunk0.parquet", 200),
        ("big_20261101_chunk1.parquet", 100),
    ]
    chunks = json.loads(_rivet("state", "chunks", "-c", str(config), "-e", "big", "--json").stdout)
    assert chunks["run"]["run_id"] == "big_20261102" and chunks["run"]["status"] == "original"
    assert [(c["label"], c["status"], c["last_error"]) for c in chunks["chunks"]] == [
        ("[1..200]", "failed", "connection reset")
    ]
    refused = _rivet("reconcile", "-c", str(config), "-e", "big")
    assert refused.returncode == 2 and "carried over from the original rivet's state" in refused.stderr


@pytest.mark.postgres
def test_the_original_tools_runs_files_and_chunk_runs_are_carried_over(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 300)")
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        conn.executescript(HISTORY)
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n'
        f"  - {{name: big, table: {table}, mode: chunked, chunk_column: id, chunk_size: 100, "
        "chunk_checkpoint: true, destination: out}\n"
    )
    first = _rivet("state", "show", "-c", str(config))
    assert "2 run(s), 2 file record(s) and 2 chunk run(s) carried over" in first.stderr, first.stderr
    _assert_history_carried(config)
    # The original's unfinished run is history: a new run starts, and it is this run that reconcile checks.
    ran = _rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    ids = sorted(i for p in visible_parts(tmp_path / "out") for i in pq.read_table(p)["id"].to_pylist())
    assert ids == list(range(1, 301))
    assert _rivet("reconcile", "-c", str(config), "-e", "big").returncode == 0


@pytest.mark.postgres
def test_the_original_tools_postgresql_state_is_carried_into_rivets_schema(pg, pg_table, tmp_path, pg_state_url):
    with psycopg.connect(pg_state_url, autocommit=True) as conn:
        postgres = HISTORY.replace("REAL", "float8").replace("id INTEGER PRIMARY KEY", "id serial PRIMARY KEY")
        for statement in postgres.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO export_state VALUES ('orders', '7', '2026-11-30T10:00:00Z')")
    table = pg_table("CREATE TABLE {t} (id int)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 10)")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n'
        f"  - {{name: orders, table: {table}, mode: incremental, cursor_column: id, destination: out}}\n"
        f"  - {{name: big, table: {table}, mode: chunked, chunk_column: id, destination: big}}\n"
    )
    env = {STATE_URL_VARIABLE: pg_state_url}
    ran = _rivet("run", "-c", str(config), "-e", "orders", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "1 incremental cursor(s), 2 run(s)" in ran.stderr
    [part] = visible_parts(tmp_path / "out")
    assert sorted(pq.read_table(part)["id"].to_pylist()) == [8, 9, 10]
    with psycopg.connect(pg_state_url) as conn:  # the original's own tables are left as they were
        assert conn.execute("SELECT last_cursor_value FROM public.export_state").fetchall() == [("7",)]
