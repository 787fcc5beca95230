"""A state file of the original rivet tool: taken over, its incremental cursors continued."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

from tests.conftest import pg_url, visible_parts

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
        return subprocess.run([sys.executable, "-m", "rivet", "run", "-c", str(config)], capture_output=True, text=True)

    first = run()
    assert first.returncode == 0, first.stderr
    assert "written by the original rivet: 1 incremental cursor(s) carried over" in first.stderr
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
    ran = subprocess.run([sys.executable, "-m", "rivet", "run", "-c", str(config)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    [part] = visible_parts(tmp_path / "out")
    assert sorted(pq.read_table(part)["id"].to_pylist()) == [5, 6]
