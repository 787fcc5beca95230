"""``parallel: N`` holds N connections to the source at most, enforced by the server itself.

Each export logs in as a role the server allows exactly the connections the README
promises (N, and one more to hold a ``snapshot: consistent``). A connection beyond
them is refused outright, however briefly it would have lived, and with no retries
the run fails: no sampling of ``pg_stat_activity`` that could miss it.
"""

from __future__ import annotations

import contextlib
import textwrap
import uuid
from collections.abc import Iterator

import pytest

import rivet
from tests.conftest import MYSQL_URL, my_query, pg_url
from tests.outputs import rows_by_glob, rows_by_manifest, write_config
from tests.sources import numbers
from tests.test_chunked import rows_in_source

ROWS = 3000
PG_EXPORTS = {
    # A query in key ranges, read by the native reader's COPY.
    "chunked": "mode: chunked\nchunk_column: id\nchunk_size: 200\nparallel: 2\n",
    # A table in page ranges.
    "pages": "parallel: 2\n",
    # Under one snapshot: the coordinator's connection holds it open, one more than parallel.
    "snapshot": "mode: chunked\nchunk_column: id\nchunk_size: 200\nparallel: 2\nsnapshot: consistent\n",
}


@contextlib.contextmanager
def pg_role(pg, table: str, limit: int) -> Iterator[str]:
    """A login allowed ``limit`` connections that reads ``table``: its URL."""
    role = f"rivet_lim_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {limit}")
    pg.execute(f"GRANT SELECT ON {table} TO {role}")
    try:
        yield pg_url().replace("postgres@", f"{role}@", 1)
    finally:
        pg.execute(f"DROP OWNED BY {role}")
        pg.execute(f"DROP ROLE {role}")


def _config(tmp_path, kind: str, url: str, export: str) -> str:
    body = f"name: lim\n{export}destination: out\ntuning: {{batch_size: 100, max_retries: 0}}\n"
    return str(write_config(tmp_path, {"type": kind, "url": url}, "- " + textwrap.indent(body, "  ").lstrip()))


@pytest.mark.postgres
@pytest.mark.parametrize("shape", PG_EXPORTS)
def test_a_postgres_export_stays_within_its_connections(pg, pg_table, tmp_path, shape):
    table = pg_table(f"CREATE TABLE {{t}} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, {ROWS}) i")
    export = PG_EXPORTS[shape] + (f"table: {table}\n" if shape == "pages" else f"query: SELECT id, h FROM {table}\n")
    limit = 3 if shape == "snapshot" else 2
    with pg_role(pg, table, limit) as url:
        result = rivet.run(_config(tmp_path, "postgres", url, export))
        assert result.ok, result["lim"].error
        assert result["lim"].chunks and len(result["lim"].chunks) > 2  # the chunks did share the connections
    expected = rows_in_source(pg, f"SELECT id, h FROM {table}")
    assert (
        rows_by_manifest(tmp_path / "out", ["id", "h"])
        == expected
        == rows_by_glob(tmp_path / "out", "lim", ["id", "h"])
    )


@pytest.mark.postgres
def test_a_parallel_read_stays_within_its_connections(pg, pg_table):
    table = pg_table(f"CREATE TABLE {{t}} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, {ROWS}) i")
    with pg_role(pg, table, 3) as url:  # two readers, and the connection holding their shared snapshot
        read = rivet.read(url, table=table, parallel=2, chunk_column="id")
    assert read.num_rows == ROWS
    found = {(i, h): 1 for i, h in zip(read["id"].to_pylist(), read["h"].to_pylist(), strict=True)}
    assert found == rows_in_source(pg, f"SELECT id, h FROM {table}")


@pytest.mark.mysql
def test_a_mariadb_export_stays_within_its_connections(my_conn, my_table, tmp_path):
    table = my_table("CREATE TABLE {t} (id INT PRIMARY KEY, h CHAR(32))")
    my_query(my_conn, f"INSERT INTO {table} SELECT i, md5(i) FROM ({numbers(ROWS)}) AS n")
    user = f"rivet_lim_{uuid.uuid4().hex[:8]}"
    my_query(my_conn, f"CREATE USER '{user}'@'%' WITH MAX_USER_CONNECTIONS 2")
    my_query(my_conn, f"GRANT SELECT ON test.{table} TO '{user}'@'%'")
    try:
        url = MYSQL_URL.replace("root@", f"{user}@", 1)
        export = f"mode: chunked\nchunk_column: id\nchunk_size: 200\nparallel: 2\ntable: {table}\n"
        result = rivet.run(_config(tmp_path, "mysql", url, export))
        assert result.ok, result["lim"].error
    finally:
        my_query(my_conn, f"DROP USER '{user}'@'%'")
    expected = {tuple(r): 1 for r in my_query(my_conn, f"SELECT id, h FROM {table}")}
    assert (
        rows_by_manifest(tmp_path / "out", ["id", "h"])
        == expected
        == rows_by_glob(tmp_path / "out", "lim", ["id", "h"])
    )
