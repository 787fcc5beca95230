"""MySQL/MariaDB through every mode: chunked and parallel exactly once, retries, time limits, resume."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import pytest

import rivet
from rivet.errors import ChunkError, ConfigError
from tests.chunkrun import planned_export, rows_in_files
from tests.conftest import MYSQL_URL, my_query
from tests.sources import numbers

pytestmark = pytest.mark.mysql


def rows_in_source(conn, sql: str) -> collections.Counter[tuple[object, ...]]:
    return collections.Counter(tuple(r) for r in my_query(conn, sql))


def export(table: str, out: Path, **options) -> rivet.ExportResult:
    options.setdefault("tuning", {"retry_backoff_ms": 10})
    return rivet.export(MYSQL_URL, table=table, destination=str(out), mode="chunked", **options)


@pytest.fixture
def skewed(my_table):
    # 95% of the keys in 1..9500, the rest spread up to 10^12, plus NULL keys.
    return my_table(
        "CREATE TABLE {t} (k BIGINT, payload VARCHAR(40));\n"
        "INSERT INTO {t} SELECT CASE WHEN i <= 9500 THEN i ELSE (i - 9500) * 2000000000 END, MD5(i) "
        f"FROM ({numbers(10000)}) AS n;\n"
        f"INSERT INTO {{t}} SELECT NULL, CONCAT('null-', i) FROM ({numbers(37)}) AS n"
    )


def test_skewed_keys_get_balanced_chunks_from_index_dives_and_null_keys_are_kept(my_conn, skewed, out):
    my_query(my_conn, f"CREATE INDEX k_idx ON {skewed} (k)")
    result = export(skewed, out, chunk_column="k", chunk_size=1000, parallel=2)
    assert rows_in_files(result.files, ["k", "payload"]) == rows_in_source(my_conn, f"SELECT k, payload FROM {skewed}")
    sizes = [c.rows for c in result.chunks]
    assert max(sizes) <= 2000, sizes
    assert 37 in sizes  # the NULL-key chunk


def test_an_unindexed_key_is_balanced_by_counting_when_asked(my_conn, skewed, out):
    result = export(skewed, out, chunk_column="k", chunk_size=1000, parallel=2, chunk_strategy="count")
    assert rows_in_files(result.files, ["k", "payload"]) == rows_in_source(my_conn, f"SELECT k, payload FROM {skewed}")
    assert max(c.rows for c in result.chunks) <= 2000


def test_each_chunk_of_a_query_reaches_its_rows_through_the_index(my_conn, my_table, tmp_path):
    t = my_table(
        "CREATE TABLE {t} (id INT PRIMARY KEY, h CHAR(32));\n"
        f"INSERT INTO {{t}} SELECT i, MD5(i) FROM ({numbers(50000)}) AS n;\n"
        "ANALYZE TABLE {t}"
    )
    export_yaml = (
        f"    query: \"SELECT id, h FROM {t} WHERE h <> ''\"\n    mode: chunked\n    chunk_column: id\n"
        "    chunk_size: 5000\n    destination: out\n"
    )
    planned = planned_export("mysql", MYSQL_URL, export_yaml, tmp_path)
    assert len(planned["chunks"]) >= 8
    for chunk in planned["chunks"]:
        with my_conn.cursor() as cur:
            cur.execute(f"EXPLAIN {chunk['query']}")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        if chunk["bounds"][0] == "nulls":
            # A query's NULL-key chunk (an outer join could make the key NULL): on a NOT NULL
            # column the server reads nothing for it.
            assert [r["Extra"] for r in rows] == ["Impossible WHERE"], (chunk, rows)
            continue
        # The derived table is merged and the key range becomes a range read of the primary key.
        assert [(r["table"], r["type"], r["key"]) for r in rows] == [(t, "range", "PRIMARY")], (chunk, rows)


def test_parallel_full_export_uses_the_primary_key(my_conn, my_table, out, caplog):
    t = my_table(
        "CREATE TABLE {t} (id BIGINT UNSIGNED PRIMARY KEY, v VARCHAR(10));\n"
        f"INSERT INTO {{t}} SELECT i, CAST(i AS CHAR) FROM ({numbers(5000)}) AS n"
    )
    with caplog.at_level("INFO", logger="rivet"):
        result = rivet.export(MYSQL_URL, table=t, destination=str(out), parallel=2)
    assert "using the primary key id" in caplog.text
    assert len(result.chunks) >= 4
    assert rows_in_files(result.files, ["id", "v"]) == rows_in_source(my_conn, f"SELECT id, v FROM {t}")


def test_consistent_snapshot_is_refused_for_mysql(my_table, out):
    t = my_table("CREATE TABLE {t} (id INT PRIMARY KEY)")
    with pytest.raises(ConfigError, match="snapshot"):
        rivet.export(MYSQL_URL, table=t, destination=str(out), parallel=2, snapshot="consistent")


def test_killed_connection_is_retried_and_the_export_succeeds(my_table, out, caplog):
    t = my_table(f"CREATE TABLE {{t}} (id INT PRIMARY KEY);\nINSERT INTO {{t}} SELECT i FROM ({numbers(4000)}) AS n")
    killed: list[int] = []

    def kill_one() -> None:
        import pymysql

        from tests.conftest import _mysql_params

        admin = pymysql.connect(**_mysql_params(MYSQL_URL), autocommit=True)
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline and not killed:
                # A chunk's statement while it reads rows (in SLEEP() for one of them).
                rows = my_query(
                    admin,
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE STATE = 'User sleep' "
                    f"AND INFO LIKE '%rivet_marker%' AND INFO LIKE '%{t}%' AND INFO NOT LIKE '%PROCESSLIST%'",
                )
                if rows:
                    my_query(admin, f"KILL CONNECTION {rows[0][0]}")
                    killed.append(int(rows[0][0]))
                else:
                    time.sleep(0.02)
        finally:
            admin.close()

    killer = threading.Thread(target=kill_one)
    killer.start()
    with caplog.at_level("WARNING", logger="rivet"):
        result = rivet.export(
            MYSQL_URL,
            query=f"SELECT id, SLEEP(0.0005) AS rivet_marker FROM {t}",
            destination=str(out),
            mode="chunked",
            chunk_column="id",
            chunk_size=1000,
            parallel=2,
            tuning={"retry_backoff_ms": 10},
        )
    killer.join()
    assert killed, "no connection was killed"
    assert "retrying" in caplog.text
    assert sorted(c[0] for c in rows_in_files(result.files, ["id"])) == list(range(1, 4001))


def test_statement_time_limit_is_enforced_and_not_retried(my_table, out, caplog):
    t = my_table(f"CREATE TABLE {{t}} (id INT PRIMARY KEY);\nINSERT INTO {{t}} SELECT i FROM ({numbers(10)}) AS n")
    with caplog.at_level("WARNING", logger="rivet"), pytest.raises(ChunkError, match="after 1 attempt") as err:
        rivet.export(
            MYSQL_URL,
            query=f"SELECT id, SLEEP(0.4) AS s FROM {t}",
            destination=str(out),
            mode="chunked",
            chunk_column="id",
            tuning={"statement_timeout_s": 1, "max_retries": 3, "retry_backoff_ms": 10},
        )
    assert err.value.__cause__.code in ("1969", "3024")  # MariaDB, MySQL
    assert "retrying" not in caplog.text
    assert not (out / "_SUCCESS").exists()


def test_permanent_error_names_the_column_and_is_not_retried(my_table, out, caplog):
    t = my_table("CREATE TABLE {t} (id INT PRIMARY KEY)")
    with caplog.at_level("WARNING", logger="rivet"), pytest.raises(rivet.RivetError, match="nope") as err:
        rivet.export(
            MYSQL_URL,
            query=f"SELECT id, nope FROM {t}",
            destination=str(out),
            tuning={"max_retries": 3, "retry_backoff_ms": 2000},
        )
    assert "1054" in str(err.value)
    assert "retrying" not in caplog.text


def test_a_long_stream_reads_every_value_intact(my_conn, my_table, out):
    # Many MiB in one statement: packets straddle every refill of the read buffer.
    t = my_table(
        "CREATE TABLE {t} (id INT PRIMARY KEY, n DECIMAL(15,2), d DATE, h VARCHAR(44));\n"
        "INSERT INTO {t} SELECT i, i / 100, DATE '1992-01-01' + INTERVAL (i % 2500) DAY, "
        f"SUBSTR(REPEAT(MD5(i), 2), 1, 10 + i % 30) FROM ({numbers(99999)}) AS n"
    )
    result = rivet.export(MYSQL_URL, table=t, destination=str(out))
    assert rows_in_files(result.files, ["id", "n", "d", "h"]) == rows_in_source(my_conn, f"SELECT id, n, d, h FROM {t}")
