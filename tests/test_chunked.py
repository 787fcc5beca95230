"""The chunked engine: every row exactly once, balanced chunks, retries, checkpoints and resume."""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest

import rivet
from rivet.errors import ChunkError, ConfigError, DataError
from tests.chunkrun import planned_export, rows_in_files
from tests.conftest import PG_URL, pg_source, pg_url
from tests.outputs import (
    rows_by_glob,
    rows_by_manifest,
    run_export_json,
    run_rivet,
    write_config,
)

pytestmark = pytest.mark.postgres


def rows_in_source(pg, sql: str) -> collections.Counter[tuple[object, ...]]:
    return collections.Counter(tuple(r) for r in pg.execute(sql).fetchall())


@pytest.fixture
def slow(pg):
    """A function that takes ``seconds`` per call when a chunk reads it. It is STABLE, so
    planning queries, which do not output it, never call it."""
    name = f"rivet_slow_{os.getpid()}_{int(time.monotonic() * 1000)}"
    pg.execute(
        f"CREATE FUNCTION {name}(v int, seconds float8) RETURNS int LANGUAGE plpgsql STABLE AS "
        "$$ BEGIN PERFORM pg_sleep(seconds); RETURN v; END $$"
    )
    yield name
    pg.execute(f"DROP FUNCTION {name}(int, float8)")


def export(table: str, out: Path, **options) -> rivet.ExportResult:
    options.setdefault("tuning", {"retry_backoff_ms": 10})
    return rivet.export(pg_url(), table=table, destination=str(out), mode="chunked", **options)


@pytest.fixture
def skewed(pg_table):
    # 95% of the keys in 1..9500, the rest spread up to 10^12, plus NULL keys.
    return pg_table(
        "CREATE TABLE {t} AS SELECT CASE WHEN i <= 9500 THEN i::bigint ELSE (i::bigint - 9500) * 2000000000 END AS k,"
        " md5(i::text) AS payload FROM generate_series(1, 10000) AS i "
        "UNION ALL SELECT NULL, 'null-' || i FROM generate_series(1, 37) AS i"
    )


def test_parts_are_published_at_chunk_boundaries_near_max_file_size(pg, pg_table, out):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 20000) AS i")
    result = export(t, out, chunk_column="id", chunk_size=1000, parallel=2, max_file_size="100KB")
    assert rows_in_files(result.files, ["id", "h"]) == rows_in_source(pg, f"SELECT id, h FROM {t}")
    manifest = json.loads((out / "manifest.json").read_text())
    parts = manifest["parts"]
    assert 4 <= len(parts) < len(result.chunks), [(p["bytes"], p["chunks"]) for p in parts]
    assert all(p["bytes"] <= 100 * 1024 * 1.5 for p in parts), [p["bytes"] for p in parts]
    # A part holds whole chunks, mostly neighbours: its rows are exactly those of its chunks' key ranges.
    for part in parts:
        ids = sorted(c[0] for c in rows_in_files([str(out / part["name"])], ["id"]))
        chunk_rows = {c.index: c.rows for c in result.chunks}
        assert len(ids) == sum(chunk_rows[c] for c in part["chunks"])


@pytest.mark.parametrize("form", ["table", "query"])
def test_skewed_keys_get_balanced_chunks_from_statistics_and_null_keys_are_kept(pg, skewed, out, form):
    pg.execute(f"ANALYZE {skewed}")
    if form == "table":
        result = export(skewed, out, chunk_column="k", chunk_size=1000, parallel=2)
    else:
        query = f"SELECT k, payload FROM {skewed} WHERE payload <> ''"
        result = rivet.export(
            pg_url(), query=query, destination=str(out), mode="chunked", chunk_column="k", chunk_size=1000, parallel=2
        )
    assert rows_in_files(result.files, ["k", "payload"]) == rows_in_source(pg, f"SELECT k, payload FROM {skewed}")
    sizes = [c.rows for c in result.chunks]
    # An even split of 1..10^12 would put 9,500 rows in one chunk; row-balanced ones stay near the target.
    assert max(sizes) <= 2000, sizes
    assert 37 in sizes  # the NULL-key chunk


def test_without_statistics_counting_balances_when_asked(pg, skewed, out):
    result = export(skewed, out, chunk_column="k", chunk_size=1000, parallel=2, chunk_strategy="count")
    assert rows_in_files(result.files, ["k", "payload"]) == rows_in_source(pg, f"SELECT k, payload FROM {skewed}")
    assert max(c.rows for c in result.chunks) <= 2000


@pytest.fixture
def indexed(pg, pg_table):
    """50,000 rows with a primary key and fresh statistics."""
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 50000) AS i")
    pg.execute(f"ALTER TABLE {t} ADD PRIMARY KEY (id)")
    pg.execute(f"ANALYZE {t}")
    return t


def plan_query(query: str, tmp_path: Path) -> dict:
    export_yaml = (
        f'    query: "{query}"\n    mode: chunked\n    chunk_column: id\n    chunk_size: 5000\n    destination: out\n'
    )
    return planned_export("postgres", pg_url(), export_yaml, tmp_path)


def test_planning_a_query_reads_no_row_of_its_table(pg, indexed, tmp_path):
    def rows_read() -> int:
        # This connection's own pending statistics (the index build scanned the table) land first.
        pg.execute("SELECT pg_stat_force_next_flush()")
        pg.execute("SELECT 1")
        pg.execute("SELECT pg_stat_clear_snapshot()")
        return pg.execute("SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = %s", (indexed,)).fetchone()[0]

    before = rows_read()
    planned = plan_query(f"SELECT id, h FROM {indexed} WHERE id % 2 = 0", tmp_path)
    # The plan shows how it was planned: catalog lookups and EXPLAIN, never an aggregate over the table.
    statements = [s["sql"] for s in planned["planning_statements"]]
    assert any(s.startswith("EXPLAIN") for s in statements), statements
    assert not any("count(" in s.lower() for s in statements), statements
    # Planned for the table's 50,000 rows (the filter's estimate is too low to trust), from its
    # statistics: about ten chunks, and no row read to find that out.
    assert len(planned["chunks"]) >= 8, planned["chunks"]
    assert rows_read() == before


def plan_nodes(node: dict) -> list[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan tree."""
    return [node, *(n for child in node.get("Plans", []) for n in plan_nodes(child))]


def test_each_chunk_of_a_query_reaches_its_rows_through_the_index(pg, indexed, tmp_path):
    planned = plan_query(f"SELECT id, h FROM {indexed} WHERE h <> ''", tmp_path)
    assert len(planned["chunks"]) >= 8
    for chunk in planned["chunks"]:
        (explained,) = pg.execute(f"EXPLAIN (FORMAT JSON) {chunk['query']}").fetchone()[0]
        scans = [n for n in plan_nodes(explained["Plan"]) if n.get("Relation Name") == indexed]
        # The key range reaches the table as an index condition: no chunk reads the whole table.
        assert [n["Node Type"] for n in scans] in (["Index Scan"], ["Bitmap Heap Scan"]), (chunk, explained)


def test_dense_chunks_have_exact_sizes(pg_table, out):
    t = pg_table("CREATE TABLE {t} AS SELECT (i * i) AS k FROM generate_series(1, 5000) AS i")
    result = export(t, out, chunk_column="k", chunk_dense=True, chunk_size=1000)
    assert sorted(c.rows for c in result.chunks if c.rows) == [1000] * 5


def test_primary_key_is_used_when_no_chunk_column_is_given(pg, pg_table, out, caplog):
    t = pg_table("CREATE TABLE {t} (id bigint PRIMARY KEY, v text)")
    pg.execute(f"INSERT INTO {t} SELECT i, i::text FROM generate_series(1, 5000) AS i")
    with caplog.at_level("INFO", logger="rivet"):
        result = export(t, out, chunk_size=1000)
    assert result.rows == 5000
    assert "using the primary key id" in caplog.text


def test_table_chunks_come_from_planner_statistics_and_stale_stats_lose_nothing(pg, pg_table, out):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS k, md5(i::text) AS h FROM generate_series(1, 40000) AS i")
    pg.execute(f"ANALYZE {t}")
    # Rows the statistics do not know about: beyond the maximum, and with a NULL key.
    pg.execute(f"INSERT INTO {t} VALUES (1000000, 'late'), (NULL, 'null key')")
    result = export(t, out, chunk_column="k", chunk_size=5000, parallel=2)
    assert rows_in_files(result.files, ["k", "h"]) == rows_in_source(pg, f"SELECT k, h FROM {t}")
    sizes = sorted(c.rows for c in result.chunks)
    assert 8 <= len(sizes) <= 12 and sizes[-1] <= 7500, sizes


def test_non_orderable_chunk_column_is_refused(pg_table, out):
    t = pg_table("CREATE TABLE {t} AS SELECT md5(i::text) AS h FROM generate_series(1, 10) AS i")
    with pytest.raises(ConfigError, match="chunk_column 'h' is string; chunking needs an integer, date or timestamp"):
        export(t, out, chunk_column="h")


def test_parallel_full_export_of_a_table_by_pages(pg, pg_table, out):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, repeat('x', 200) AS pad FROM generate_series(1, 50000) AS i")
    result = rivet.export(pg_url(), table=t, destination=str(out), parallel=2, snapshot="consistent")
    assert len(result.chunks) > 2 and len(result.files) <= 2
    assert sorted(c[0] for c in rows_in_files(result.files, ["id"])) == list(range(1, 50001))


def test_permanent_error_fails_at_once_naming_the_chunk(pg_table, out, caplog):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 3000) AS i")
    with caplog.at_level("WARNING", logger="rivet"), pytest.raises(ChunkError) as err:
        rivet.export(
            pg_url(),
            query=f"SELECT id, 1 / (id - 1500) AS x FROM {t}",
            destination=str(out),
            mode="chunked",
            chunk_column="id",
            chunk_size=1000,
            tuning={"max_retries": 5, "retry_backoff_ms": 2000},
        )
    assert "retrying" not in caplog.text  # no retries, no backoff
    message = str(err.value)
    assert "failed after 1 attempt(s)" in message and "division by zero" in message and "SQL: SELECT" in message
    assert err.value.__cause__.code == "22012"
    assert not (out / "_SUCCESS").exists()
    assert [p for p in out.iterdir() if p.suffix == ".parquet"] == []


def test_terminated_backend_is_retried_and_the_export_succeeds(pg, pg_table, slow, out, caplog):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 4000) AS i")
    query = f"SELECT id, {slow}(id, 0.0005) AS s FROM {t}"
    killed = []

    def kill_one() -> None:
        deadline = time.monotonic() + 120
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            while time.monotonic() < deadline and not killed:
                # A chunk's COPY that has streamed some rows already: terminated mid-stream.
                # Only this test's own chunks (its slow function), whatever else runs on the server.
                rows = admin.execute(
                    "SELECT a.pid FROM pg_stat_activity AS a JOIN pg_stat_progress_copy AS c ON c.pid = a.pid "
                    "WHERE a.application_name = 'rivet' AND a.state = 'active' "
                    "AND a.query LIKE %s AND c.tuples_processed > 0",
                    (f"COPY%{slow}%",),
                ).fetchall()
                if rows:
                    admin.execute("SELECT pg_terminate_backend(%s)", (rows[0][0],))
                    killed.append(rows[0][0])
                else:
                    time.sleep(0.02)

    killer = threading.Thread(target=kill_one)
    killer.start()
    with caplog.at_level("WARNING", logger="rivet"):
        result = rivet.export(
            pg_url(),
            query=query,
            destination=str(out),
            mode="chunked",
            chunk_column="id",
            chunk_size=1000,
            parallel=2,
            tuning={"retry_backoff_ms": 10},
        )
    killer.join()
    assert killed, "no backend was terminated"
    assert "retrying" in caplog.text and "SQLSTATE 57P01" in caplog.text
    assert sorted(c[0] for c in rows_in_files(result.files, ["id"])) == list(range(1, 4001))


def test_a_lost_connection_in_the_third_chunk_of_a_part_rereads_the_part(pg, pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 6000) AS i")
    config = write_config(
        tmp_path,
        pg_source(),
        f"- name: c\n  table: {t}\n  mode: chunked\n  chunk_column: id\n  chunk_size: 1000\n"
        "  chunk_checkpoint: true\n  destination: out\n  tuning: {batch_size: 200, retry_backoff_ms: 10}\n",
    )
    # Five batches a chunk: the 13th batch is in the third chunk, after two chunks went into the part.
    ran = run_export_json(config, env={"RIVET_FAILPOINTS": "socket_closed@13"})
    assert ran["code"] == 0, ran["stderr"]
    assert "retrying" in ran["stderr"] and "failpoint socket_closed" in ran["stderr"]
    assert ran["retries"] == 1  # in the summary (notifications call the run degraded)
    out = tmp_path / "out"
    # The part was written again from its first chunk: every row once, every chunk in one part.
    assert rows_by_manifest(out, ["id", "h"]) == rows_in_source(pg, f"SELECT id, h FROM {t}")
    assert rows_by_glob(out, "c", ["id", "h"]) == rows_in_source(pg, f"SELECT id, h FROM {t}")
    parts = json.loads((out / "manifest.json").read_text())["parts"]
    chunks = ran_chunks(tmp_path)
    assert sorted(c for p in parts for c in p["chunks"]) == [c[0] for c in chunks] and len(parts) == 1
    # The two chunks before the failure went back to the queue and were claimed again; the failed
    # chunk was retried by its worker, and the rest were claimed once.
    assert [attempts for _, _, attempts in chunks] == [2, 2] + [1] * (len(chunks) - 2), chunks


def ran_chunks(tmp_path: Path) -> list[tuple[int, str, int]]:
    """Each chunk of the state store's only run: index, status, attempts."""
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        return conn.execute("SELECT chunk_index, status, attempts FROM chunk_tasks ORDER BY chunk_index").fetchall()


def test_statement_timeout_is_enforced_and_not_retried(pg_table, slow, out, caplog):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 10) AS i")
    query = f"SELECT id, {slow}(id, 0.4) AS s FROM {t}"
    with caplog.at_level("WARNING", logger="rivet"), pytest.raises(ChunkError, match="statement timeout") as err:
        rivet.export(
            pg_url(),
            query=query,
            destination=str(out),
            mode="chunked",
            chunk_column="id",
            tuning={"statement_timeout_s": 1, "max_retries": 3, "retry_backoff_ms": 10},
        )
    assert err.value.__cause__.code == "57014"
    assert "after 1 attempt(s)" in str(err.value)
    assert "retrying" not in caplog.text


def test_resume_is_refused_when_the_plan_changed(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 100) AS i")
    body = f"- name: c\n  table: {t}\n  mode: chunked\n  chunk_column: id\n  chunk_size: 10\n  chunk_checkpoint: true\n"
    config = write_config(tmp_path, pg_source(), body + "  destination: out\n")
    store = tmp_path / ".rivet_state.db"
    from rivet.state import StateStore
    from rivet.state.keys import UNCLAIMED, ExportKey

    s = StateStore(store)
    s.create_chunk_run(
        "c_old",
        ExportKey(UNCLAIMED, "c"),
        "0000000000000000",
        "c_old",
        "2026-01-01T00:00:00.000Z",
        [(0, "SELECT 1", "x", ("whole",))],
        str(tmp_path / "out"),
    )
    s.close()
    proc = run_rivet("run", "-c", str(config), "--resume")
    assert proc.returncode == 2
    assert "changed since run c_old started" in proc.stderr
    chunks = run_rivet("state", "chunks", "-c", str(config), "-e", "c")
    assert "run c_old (in_progress): 0 of 1 chunks done" in chunks.stdout
    reset = run_rivet("state", "reset-chunks", "-c", str(config), "-e", "c")
    assert reset.returncode == 0 and "dropped 1 unfinished chunked run" in reset.stderr
    rerun = run_rivet("run", "-c", str(config))
    assert rerun.returncode == 0, rerun.stderr


def test_incremental_coalesce_mode(pg, pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} (id int, updated_at int, created_at int NOT NULL)")
    pg.execute(f"INSERT INTO {t} VALUES (1, NULL, 5), (2, 7, 1), (3, NULL, 9)")
    state_dir = tmp_path
    common = dict(
        table=t,
        destination=str(tmp_path / "o"),
        mode="incremental",
        cursor_column="updated_at",
        incremental_cursor_mode="coalesce",
        cursor_fallback_column="created_at",
        state_dir=str(state_dir),
    )
    first = rivet.export(pg_url(), **common)
    assert first.rows == 3
    pg.execute(f"INSERT INTO {t} VALUES (4, NULL, 8), (5, 10, 1)")
    second = rivet.export(pg_url(), **common)
    # COALESCE(updated_at, created_at) >= 9: row 3 (9) was exported already, row 5 (10) is new;
    # row 4 (8) is before the boundary.
    assert sorted(k[0] for k in rows_in_files(second.files, ["id"])) == [5]


def test_incremental_without_a_state_store_is_refused(pg_table, out):
    t = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    with pytest.raises(ConfigError, match="keeps its cursor in a state store"):
        rivet.export(pg_url(), table=t, destination=str(out), mode="incremental", cursor_column="id")


def test_null_cursor_on_first_run_fails(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT 1 AS id UNION ALL SELECT NULL")
    with pytest.raises(DataError, match="cursor id is NULL in at least 1 row"):
        rivet.export(
            pg_url(),
            table=t,
            destination=str(tmp_path / "o"),
            mode="incremental",
            cursor_column="id",
            state_dir=str(tmp_path),
        )
    assert not (tmp_path / "o" / "_SUCCESS").exists()
