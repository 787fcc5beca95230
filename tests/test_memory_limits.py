"""max_batch_memory_mb with on_batch_memory_exceeded, and memory_threshold_mb, against real servers."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import DataError
from tests.conftest import MYSQL_URL, pg_url, visible_parts


@pytest.mark.postgres
def test_a_row_above_max_batch_memory_fails_or_warns_as_asked(pg, pg_table, tmp_path, caplog):
    table = pg_table("CREATE TABLE {t} (id int, body text)")
    pg.execute(f"INSERT INTO {table} SELECT g, repeat('x', 10) FROM generate_series(1, 1000) g")
    pg.execute(f"INSERT INTO {table} VALUES (0, repeat('y', 2 * 1024 * 1024))")
    options = dict(query=f"SELECT * FROM {table}")
    with pytest.raises(DataError, match=r"a batch of 1 row\(s\) holds 2\.0 MiB, above max_batch_memory_mb \(1\)"):
        rivet.export(
            pg_url(),
            destination=str(tmp_path / "fail"),
            tuning={"max_batch_memory_mb": 1, "on_batch_memory_exceeded": "fail"},
            **options,
        )
    assert visible_parts(tmp_path / "fail") == []
    with caplog.at_level("WARNING", logger="rivet"):
        result = rivet.export(
            pg_url(), destination=str(tmp_path / "warn"), tuning={"max_batch_memory_mb": 1}, **options
        )
    assert result.rows == 1001 and "above max_batch_memory_mb (1); it is written whole" in caplog.text
    [part] = visible_parts(tmp_path / "warn")
    assert pq.read_table(part).num_rows == 1001


@pytest.mark.mysql
def test_chunks_wait_while_memory_is_above_the_threshold_and_every_row_arrives(my_table, my_conn, tmp_path, caplog):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY, h char(32))")
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, MD5(%s))", [(i, i) for i in range(1, 3001)])
    with caplog.at_level("WARNING", logger="rivet"):
        result = rivet.export(
            MYSQL_URL,
            table=table,
            mode="chunked",
            chunk_size=300,
            parallel=2,
            destination=str(tmp_path / "o"),
            tuning={"memory_threshold_mb": 1},  # always above: the workers take turns
        )
    assert "is above memory_threshold_mb (1): new chunks wait" in caplog.text
    ids = sorted(i for p in visible_parts(tmp_path / "o") for i in pq.read_table(p)["id"].to_pylist())
    assert result.rows == 3000 and ids == list(range(1, 3001))


@pytest.mark.mysql
def test_a_chunked_run_checks_single_rows_against_the_cap_too(my_table, my_conn, tmp_path):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY, body longtext)")
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(i, "x") for i in range(1, 201)])
        cur.execute(f"INSERT INTO {table} VALUES (500, REPEAT('y', 3 * 1024 * 1024))")
    with pytest.raises(Exception, match=r"above max_batch_memory_mb \(1\)"):
        rivet.export(
            MYSQL_URL,
            table=table,
            mode="chunked",
            chunk_size=50,
            parallel=2,
            destination=str(tmp_path / "o"),
            tuning={"max_batch_memory_mb": 1, "on_batch_memory_exceeded": "fail", "max_retries": 0},
        )
    assert visible_parts(tmp_path / "o") == []
