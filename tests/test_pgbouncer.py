"""Through a real PgBouncer (Debian's), in session and in transaction pooling: every read mode exports the
table exactly, rivet check says when statements land on different server connections, and what a pooler
cannot carry is refused by name before anything is read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from tests.outputs import run_rivet, write_config
from tests.servers import Bouncer, pgbouncer, postgres_cluster

ROWS = 5000


@pytest.fixture(scope="module", params=["session", "transaction"])
def bouncer(request: pytest.FixtureRequest) -> Iterator[Bouncer]:
    with pgbouncer(request.param) as running:
        yield running


@pytest.fixture
def table(pg, pg_table) -> str:
    name = pg_table("CREATE TABLE {t} (id INT PRIMARY KEY, note TEXT, at TIMESTAMPTZ)")
    pg.execute(
        f"INSERT INTO {name} SELECT i, 'row ' || i, timestamptz '2024-01-01' + i * interval '1 minute' "  # type: ignore[arg-type]
        f"FROM generate_series(1, {ROWS}) i"
    )
    return name


def read_back(folder: Path) -> list[tuple[Any, ...]]:
    rows = [r for p in sorted(folder.rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return sorted((r["id"], r["note"], r["at"]) for r in rows)


def source_rows(pg: Any, table: str) -> list[tuple[Any, ...]]:
    return sorted(pg.execute(f"SELECT id, note, at FROM {table}").fetchall())  # type: ignore[arg-type]


MODES = {
    "full": {},
    "full, parallel page ranges in one snapshot": {"parallel": 2},
    "chunked, parallel": {"mode": "chunked", "chunk_column": "id", "chunk_size": 700, "parallel": 2},
    "chunked, checkpointed": {"mode": "chunked", "chunk_column": "id", "chunk_size": 900, "chunk_checkpoint": True},
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_each_read_mode_is_exact_through_the_pooler(bouncer, pg, table, tmp_path, mode):
    export = {"name": "t", "table": f"public.{table}", "destination": str(tmp_path / "out"), **MODES[mode]}
    done = run_rivet("run", "-c", str(write_config(tmp_path, bouncer.source, [export])))
    assert done.returncode == 0, done.stderr
    assert read_back(tmp_path / "out") == source_rows(pg, table)


def test_an_incremental_cursor_moves_exactly_through_the_pooler(bouncer, pg, table, tmp_path):
    export = {"name": "t", "table": f"public.{table}", "mode": "incremental", "cursor_column": "id",
              "destination": str(tmp_path / "out")}  # fmt: skip
    config = write_config(tmp_path, bouncer.source, [export])
    assert run_rivet("run", "-c", str(config)).returncode == 0
    pg.execute(f"INSERT INTO {table} VALUES ({ROWS + 1}, 'late', now())")  # type: ignore[arg-type]
    again = run_rivet("run", "-c", str(config))
    assert again.returncode == 0, again.stderr
    assert read_back(tmp_path / "out") == source_rows(pg, table)


def test_check_says_when_statements_reach_different_server_connections(bouncer, table, tmp_path):
    export = {"name": "t", "table": f"public.{table}", "destination": str(tmp_path / "out")}
    checked = run_rivet("check", "-c", str(write_config(tmp_path, bouncer.source, [export])), "--json")
    assert checked.returncode == 0, checked.stderr
    said = checked.stdout
    if bouncer.pool_mode == "transaction":
        assert "consecutive statements reached different server connections" in said
    else:
        assert "consecutive statements reached different server connections" not in said


def test_change_capture_through_a_pooler_is_refused_by_name(bouncer, tmp_path):
    # A server with its log on, behind a pooler of the same mode.
    with postgres_cluster(wal_level="logical") as cluster, pgbouncer(bouncer.pool_mode, cluster.port, "postgres") as b:
        with psycopg.connect(cluster.url, autocommit=True) as direct:
            direct.execute("CREATE TABLE c (id INT PRIMARY KEY)")
        export = {"name": "c", "table": "public.c", "mode": "cdc", "destination": str(tmp_path / "out")}
        config = write_config(tmp_path, b.source, [export])
        refused, doctor = run_rivet("run", "-c", str(config)), run_rivet("doctor", "-c", str(config))
        expected = "which the connection pooler in the way (PgBouncer) does not carry"
        assert refused.returncode == 1 and expected in refused.stderr
        assert doctor.returncode == 1 and expected in doctor.stdout + doctor.stderr  # said before any run
        with psycopg.connect(cluster.url, autocommit=True) as direct:  # nothing made on the server
            assert not direct.execute("SELECT 1 FROM pg_replication_slots").fetchall()
            assert not direct.execute("SELECT 1 FROM pg_publication").fetchall()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))


def test_a_statement_pool_fails_the_export_at_once_and_says_why(table, tmp_path):
    with pgbouncer("statement") as statement_pool:
        export = {"name": "t", "table": f"public.{table}", "destination": str(tmp_path / "out")}
        failed = run_rivet("run", "-c", str(write_config(tmp_path, statement_pool.source, [export])))
    assert failed.returncode == 1
    assert "transaction blocks not allowed in statement pooling mode" in failed.stderr
    assert "retrying" not in failed.stderr  # another attempt would meet the same pool
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))
