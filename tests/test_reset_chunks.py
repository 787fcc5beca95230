"""rivet state reset-chunks --failed / --stuck-checkpoints: requeue some chunks of an unfinished run."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.chunkrun import kill_after_chunks, slow_mysql_chunked_export
from tests.conftest import MYSQL_URL, pg_url, visible_parts
from tests.outputs import run_rivet
from tests.sources import numbers


def _statuses(tmp_path: Path) -> dict[str, int]:
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        return dict(conn.execute("SELECT status, count(*) FROM chunk_tasks GROUP BY status").fetchall())


@pytest.mark.postgres
def test_failed_chunks_go_back_in_the_queue_with_fresh_attempts(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, d int)")
    pg.execute(f"INSERT INTO {table} SELECT g, g - 150 FROM generate_series(1, 400) g")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - name: c
                query: SELECT id, 1 / d AS x FROM {table}
                chunk_column: id
                mode: chunked
                chunk_size: 100
                chunk_checkpoint: true
                destination: out
            """
        )
    )
    failed = run_rivet("run", "-c", str(config))
    assert failed.returncode != 0 and "division by zero" in failed.stderr
    assert _statuses(tmp_path).get("failed") == 1
    reset = run_rivet("state", "reset-chunks", "-c", str(config), "-e", "c", "--failed")
    assert reset.returncode == 0 and "1 chunk(s) of run" in reset.stderr, reset.stderr
    assert "failed" not in _statuses(tmp_path)
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        assert conn.execute("SELECT count(*) FROM chunk_tasks WHERE status = 'pending' AND attempts = 0").fetchone()[0]
    pg.execute(f"UPDATE {table} SET d = 1 WHERE d = 0")
    resumed = run_rivet("run", "-c", str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    ids = sorted(i for p in visible_parts(tmp_path / "out") for i in pq.read_table(p)["id"].to_pylist())
    assert ids == list(range(1, 401))


@pytest.mark.mysql
def test_chunks_left_running_by_a_killed_run_go_back_in_the_queue(my_table, tmp_path):
    table = my_table(
        "CREATE TABLE {t} (id INT PRIMARY KEY, h CHAR(32));\n"
        f"INSERT INTO {{t}} SELECT i, MD5(i) FROM ({numbers(12000)}) AS n"
    )
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: mysql, url: "{MYSQL_URL}"}}\nexports:\n'
        + textwrap.indent(slow_mysql_chunked_export(table), "  ")
    )
    kill_after_chunks(config, 4, while_reading=True)
    assert _statuses(tmp_path).get("running", 0) >= 1
    reset = run_rivet("state", "reset-chunks", "-c", str(config), "-e", "slow", "--stuck-checkpoints")
    assert reset.returncode == 0, reset.stderr
    assert "running" not in _statuses(tmp_path)


@pytest.mark.postgres
def test_reset_chunks_drops_only_the_unfinished_run_unless_asked(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 400) i")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n'
        f"  - {{name: c, table: {table}, mode: chunked, chunk_column: id, chunk_size: 100, chunk_checkpoint: true, "
        "destination: out}\n"
    )
    assert run_rivet("run", "-c", str(config)).returncode == 0
    kept = run_rivet("state", "reset-chunks", "-c", str(config), "-e", "c")
    assert kept.returncode == 0 and "dropped 0 unfinished chunked run(s) of c" in kept.stderr
    assert run_rivet("reconcile", "-c", str(config), "-e", "c").returncode == 0  # the completed run is still there
    dropped = run_rivet("state", "reset-chunks", "-c", str(config), "-e", "c", "--all")
    assert dropped.returncode == 0 and "dropped 1 chunked run(s) of c" in dropped.stderr
    refused = run_rivet("reconcile", "-c", str(config), "-e", "c")
    assert refused.returncode == 2 and "discarded (rivet state reset-chunks --all)" in refused.stderr
    assert "chunk_checkpoint: true keeps one" not in refused.stderr
