"""quality gates: checked on the rows written, before anything is published; a failure publishes nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import ConfigError, QualityError
from tests.chunkrun import kill_after_chunks, slow_mysql_chunked_export
from tests.conftest import MYSQL_URL, my_source, pg_source, pg_url, visible_parts
from tests.outputs import files_with_bytes, run_rivet, write_config
from tests.sources import numbers


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_rivet("run", "-c", str(config), "--json", *args)


@pytest.mark.postgres
def test_a_failed_row_count_gate_publishes_nothing_and_exits_3(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 7) g")
    config = write_config(
        tmp_path,
        pg_source(),
        f"""\
        - name: t
          query: SELECT * FROM {table}
          destination: out
          quality: {{row_count_min: 10, row_count_max: 100}}
        """,
    )
    run = _run(config)
    assert run.returncode == 3, run.stderr
    [export] = json.loads(run.stdout)["exports"]
    assert export["status"] == "failed"
    assert "row_count_min: 7 rows < 10" in export["error"]
    assert visible_parts(tmp_path / "out") == []
    assert not (tmp_path / "out" / "manifest.json").exists() and not (tmp_path / "out" / "_SUCCESS").exists()


@pytest.mark.postgres
def test_a_failed_null_ratio_gate_moves_no_cursor(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, email text)")
    pg.execute(f"INSERT INTO {table} VALUES (1, 'a@x'), (2, NULL), (3, NULL), (4, 'd@x')")
    options = dict(
        query=f"SELECT * FROM {table}",
        mode="incremental",
        cursor_column="id",
        destination=str(tmp_path / "out"),
        state_dir=str(tmp_path),
        quality={"null_ratio_max": {"email": 0.25}},
    )
    with pytest.raises(QualityError) as failed:
        rivet.export(pg_url(), **options)
    assert failed.value.exit_code == 3
    assert failed.value.failures == ["null_ratio_max email: 0.5000 (2 of 4 rows) > 0.25"]
    assert visible_parts(tmp_path / "out") == []
    # Fixed at the source: the next run reads the same rows again, because the cursor never moved.
    pg.execute(f"UPDATE {table} SET email = 'fixed@x' WHERE email IS NULL")
    passed = rivet.export(pg_url(), **options)
    assert passed.status == "success" and passed.rows == 4


@pytest.mark.postgres
def test_gates_that_hold_let_a_chunked_run_publish_every_row(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id, CASE WHEN g % 10 = 0 THEN NULL ELSE g END AS v "
                     "FROM generate_series(1, 5000) g")  # fmt: skip
    pg.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    result = rivet.export(
        pg_url(),
        table=table,
        mode="chunked",
        chunk_size=400,
        parallel=2,
        destination=str(tmp_path / "out"),
        quality={
            "row_count_min": 5000,
            "row_count_max": 5000,
            "null_ratio_max": {"v": 0.1},
            "unique_columns": ["id", "v"],
        },
    )
    assert result.status == "success", result.error
    assert sum(pq.read_table(p).num_rows for p in visible_parts(tmp_path / "out")) == 5000


@pytest.mark.mysql
def test_duplicates_across_chunks_and_workers_fail_the_gate_and_take_every_part_back(my_conn, my_table, tmp_path):
    table = my_table(
        "CREATE TABLE {t} (id INT PRIMARY KEY, d INT);\n"
        f"INSERT INTO {{t}} SELECT i, MOD(i, 1500) FROM ({numbers(3000)}) AS n"
    )
    options = dict(table=table, mode="chunked", chunk_size=250, parallel=2, chunk_checkpoint=True)
    first = rivet.export(MYSQL_URL, destination=str(tmp_path / "out"), state_dir=str(tmp_path), **options)
    before = files_with_bytes(tmp_path / "out")
    assert "_SUCCESS" in before and first.rows == 3000
    with pytest.raises(QualityError, match=r"unique_columns d: 1500 duplicate value\(s\)"):
        rivet.export(
            MYSQL_URL,
            destination=str(tmp_path / "out"),
            state_dir=str(tmp_path),
            quality={"unique_columns": ["d"]},
            max_file_size="4KB",
            **options,
        )
    # Every part of the failed run is taken back and the output before it is whole, _SUCCESS included.
    assert files_with_bytes(tmp_path / "out") == before
    # The failed run is closed, not left to resume: the next run starts afresh.
    again = rivet.export(MYSQL_URL, destination=str(tmp_path / "out"), state_dir=str(tmp_path), **options)
    assert again.status == "success" and again.rows == 3000


@pytest.mark.mysql
def test_a_resumed_run_checks_the_rows_published_before_the_kill(my_conn, my_table, tmp_path):
    # d repeats every 6000 ids, so half the duplicates pair a row read before the kill with one read after.
    table = my_table(
        "CREATE TABLE {t} (id INT PRIMARY KEY, d INT, h CHAR(32));\n"
        f"INSERT INTO {{t}} SELECT i, MOD(i, 6000), MD5(i) FROM ({numbers(12000)}) AS n"
    )
    gates = "  quality: {row_count_min: 12000, row_count_max: 12000, unique_columns: [d]}\n"
    config = write_config(tmp_path, my_source(), slow_mysql_chunked_export(table, "id, d, h", gates))
    before = kill_after_chunks(config, 6)
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        [(total,)] = conn.execute("SELECT count(*) FROM chunk_tasks").fetchall()
    assert 6 <= len(before) < total, "the kill came after the last chunk: nothing is left to resume"
    resumed = _run(config, "--resume")
    assert resumed.returncode == 3, resumed.stderr
    [export] = json.loads(resumed.stdout)["exports"]
    # Every row counted once (the row-count gates hold) and every pair found, old parts included.
    assert "unique_columns d: 6000 duplicate value(s)" in export["error"]
    assert "row_count" not in export["error"]
    assert visible_parts(tmp_path / "out") == []
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        assert conn.execute("SELECT status FROM chunk_runs").fetchall() == [("failed",)]


def test_a_gate_on_a_column_the_query_does_not_return_is_refused(tmp_path):
    db = tmp_path / "s.db"
    sqlite3.connect(db).executescript("CREATE TABLE t (id int); INSERT INTO t VALUES (1);").close()
    with pytest.raises(ConfigError, match="quality names column 'emial', which the query does not return"):
        rivet.export(
            f"sqlite:///{db}",
            query="SELECT * FROM t",
            destination=str(tmp_path / "out"),
            quality={"null_ratio_max": {"emial": 0.1}},
        )
    assert visible_parts(tmp_path / "out") == []


def test_quality_bounds_are_checked_when_the_config_loads(tmp_path):
    with pytest.raises(ConfigError, match=r"row_count_min \(5\) is above row_count_max \(2\)"):
        rivet.export(
            "sqlite:///x.db",
            query="SELECT 1",
            destination=str(tmp_path),
            quality={"row_count_min": 5, "row_count_max": 2},
        )


@pytest.mark.postgres
def test_a_refused_gate_closes_a_checkpointed_run_that_read_nothing(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 300) g")
    pg.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    options = dict(
        table=table, mode="chunked", chunk_size=100, chunk_checkpoint=True,
        destination=str(tmp_path / "out"), state_dir=str(tmp_path),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="quality names column 'idd'"):
        rivet.export(pg_url(), quality={"unique_columns": ["idd"]}, **options)
    # The typo fixed, the next run needs no reset.
    fixed = rivet.export(pg_url(), quality={"unique_columns": ["id"]}, **options)
    assert fixed.status == "success" and fixed.rows == 300
