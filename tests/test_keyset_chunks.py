"""Keyset chunks (chunk_by_key): ranges of a unique key the server orders, on both servers.

Each test reads the written files back and compares them with the table: every row once,
whatever the key's type, collation or column count.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import sqlite3
import uuid
from pathlib import Path

import pytest

import rivet
from rivet.errors import ConfigError
from rivet.plan import keywalk
from tests.chunkrun import kill_after_chunks, resume_and_check, rows_in_files
from tests.conftest import MYSQL_URL
from tests.outputs import run_rivet, write_config
from tests.sources import Source, numbers

KEYS = ["uuid", "text", "text_uuid", "int_int"]


def table_rows(source: Source, table: str, columns: list[str]) -> collections.Counter[tuple[object, ...]]:
    """The key columns and ``v`` of ``table``, a uuid as the text rivet writes."""
    rows = source.sql(f"SELECT {', '.join(columns)}, v FROM {table}")
    return collections.Counter(tuple(str(x) if isinstance(x, uuid.UUID) else x for x in row) for row in rows)


def export(source: Source, table: str, out: Path, **options) -> rivet.ExportResult:
    options.setdefault("tuning", {"retry_backoff_ms": 10})
    return rivet.export(source.url, table=table, destination=str(out), mode="chunked", **options)


@pytest.mark.parametrize("parallel", [2, 4])
@pytest.mark.parametrize("key", KEYS)
def test_keyset_chunks_read_every_row_once(database_server, out, key, parallel):
    source = database_server
    table, columns = source.keyed_table(key, 6000)
    result = export(source, table, out, chunk_by_key=columns, chunk_size=700, parallel=parallel)

    assert rows_in_files(result.files, [*columns, "v"]) == table_rows(source, table, columns)
    # Cut where the server's walk along the index put them: every chunk but the last holds the same rows.
    rows = [c.rows for c in sorted(result.chunks, key=lambda c: c.index)]
    assert len(rows) >= 5 and len(set(rows[:-1])) == 1 and 0 < rows[-1] <= rows[0], rows
    assert (out / "_SUCCESS").exists()


def test_a_query_keyset_run_killed_and_resumed_reads_each_row_once(database_server, tmp_path):
    source = database_server
    table, columns = source.keyed_table("text_uuid", 6000)
    export_yaml = (
        f'- name: slow\n  query: "SELECT k, u, v, {source.slowly("v")} AS s FROM {table}"\n  mode: chunked\n'
        "  chunk_by_key: [k, u]\n  chunk_size: 500\n  chunk_checkpoint: true\n  parallel: 2\n"
        "  max_file_size: 40KB\n  destination: out\n"
    )
    config = write_config(tmp_path, source.block, export_yaml)
    before = kill_after_chunks(config, 3)
    assert not (tmp_path / "out" / "_SUCCESS").exists()

    files = resume_and_check(config, before)
    assert rows_in_files(files, [*columns, "v"]) == table_rows(source, table, columns)


@pytest.mark.parametrize(
    ("key", "refusal"),
    [
        ("n", "is not the primary key or a unique index"),
        ("code", "is not the primary key or a unique index"),
        ("nick", "nick of unique index"),
        (["v", "id"], "is not the primary key or a unique index"),
        ("at", "keyset chunks take integer, text and uuid columns"),
    ],
    ids=["non-unique index", "no index", "nullable unique", "wrong order", "timestamp"],
)
def test_a_key_keyset_chunks_cannot_walk_is_refused_by_name(database_server, out, key, refusal):
    source = database_server
    table = source.sql_table(
        "CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL, code varchar(20) NOT NULL, "
        "nick varchar(20) UNIQUE, n int NOT NULL, at timestamp NOT NULL, UNIQUE (id, v))",
        "CREATE INDEX {t}_n ON {t} (n)",
    )
    with pytest.raises(ConfigError, match=refusal) as refused:
        export(source, table, out, chunk_by_key=key)
    assert "chunk_by_key" in str(refused.value)
    assert not (out / "_SUCCESS").exists() and not list(out.rglob("*.parquet"))
    # The refusal lists the keys it could walk.
    if "unique index" in refusal and "nick" not in refusal:
        assert "(id), (id, v)" in str(refused.value), str(refused.value)


def test_a_table_whose_primary_key_is_not_one_integer_is_read_in_keyset_chunks_and_resumed(database_server, tmp_path):
    # chunked with table: and no key: ranges of an integer key; for any other key (here (text, uuid))
    # page ranges or keyset chunks, decided again from the table when the run is resumed.
    source = database_server
    table, columns = source.keyed_table("text_uuid", 6000)
    export_yaml = (
        f"- name: t\n  table: {table}\n  mode: chunked\n  chunk_size: 500\n  chunk_checkpoint: true\n"
        "  parallel: 2\n  max_file_size: 40KB\n  destination: out\n"
    )
    config = write_config(tmp_path, source.block, export_yaml)
    crashed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": "after_part_write@3:crash"})
    assert crashed.returncode != 0 and "failpoint after_part_write fired" in crashed.stderr, crashed.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / ".rivet_state.db")) as conn:
        bounds = [json.loads(b) for (b,) in conn.execute("SELECT bounds FROM chunk_tasks")]
        before = dict(conn.execute("SELECT chunk_index, parts FROM chunk_tasks WHERE status = 'done'").fetchall())
    # PostgreSQL reads such a table by its pages (a UUID key is in no order on disk); MariaDB by its key.
    if source.kind == "postgres":
        assert {b[0] for b in bounds} == {"pages"}, bounds
    else:
        assert {b[0] for b in bounds} == {"keyset"} and bounds[0][1] == columns
    assert before and not (tmp_path / "out" / "_SUCCESS").exists()

    files = resume_and_check(config, before)
    assert rows_in_files(files, [*columns, "v"]) == table_rows(source, table, columns)


@pytest.mark.parametrize("by", ["chunk_by_key", "chunk_column"])
def test_a_key_an_outer_join_makes_null_still_reads_every_row(database_server, out, by):
    # r.k is NOT NULL in its table, but the LEFT JOIN gives it NULL for every row of l without a match.
    source = database_server
    left = source.sql_table("CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL)")
    right = source.sql_table("CREATE TABLE {t} (k int PRIMARY KEY, lid int NOT NULL)")
    source.sql(f"INSERT INTO {left} SELECT i, i FROM {_numbers(source, 2000)}")
    source.sql(f"INSERT INTO {right} SELECT i, i FROM {_numbers(source, 1000)} WHERE mod(i, 2) = 0")
    query = f"SELECT r.k, l.v FROM {left} l LEFT JOIN {right} r ON r.lid = l.id"
    result = rivet.export(source.url, query=query, destination=str(out), mode="chunked", chunk_size=300,
                          parallel=2, **{by: "k"})  # fmt: skip
    assert rows_in_files(result.files, ["k", "v"]) == source.rows(query)
    assert result.rows == 2000


def _numbers(source: Source, n: int) -> str:
    """A FROM item of the integers 1..n in a column ``i``."""
    return f"generate_series(1, {n}) AS i" if source.kind == "postgres" else f"({numbers(n)}) AS n"


# Tens of chunks, not thousands: past twice the chunks planned, the walk doubles its step.
@pytest.mark.parametrize(("options", "most"), [({"chunk_count": 4}, 60), ({"chunk_size": 100_000}, 1)])
def test_statistics_that_understate_the_table_do_not_make_thousands_of_chunks(database_server, out, options, most):
    source = database_server
    table = source.sql_table("CREATE TABLE {t} (k varchar(20) PRIMARY KEY, v int NOT NULL)")
    source.sql(f"INSERT INTO {table} SELECT concat('k', i), i FROM {_numbers(source, 10)}")
    source.sql(f"ANALYZE {'TABLE ' if source.kind == 'mysql' else ''}{table}")
    source.sql(f"INSERT INTO {table} SELECT concat('n', i), i FROM {_numbers(source, 20000)}")
    result = export(source, table, out, chunk_by_key="k", parallel=2, **options)
    assert result.rows == 20010 and 1 <= len(result.chunks) <= most, len(result.chunks)
    assert rows_in_files(result.files, ["k", "v"]) == source.rows(f"SELECT k, v FROM {table}")


@pytest.mark.mysql
@pytest.mark.parametrize(
    ("column", "shown"), [("b BIT(16)", "bit(16)"), ("b ENUM('x', 'a')", "enum")], ids=["bit", "enum"]
)
def test_a_mysql_key_the_server_orders_by_another_rule_is_refused_by_name(my_table, out, column, shown):
    table = my_table(f"CREATE TABLE {{t}} ({column} NOT NULL, t varchar(10) NOT NULL, PRIMARY KEY (b, t))")
    with pytest.raises(ConfigError, match=rf"chunk_by_key 'b' is {re.escape(shown)}"):
        rivet.export(MYSQL_URL, table=table, destination=str(out), mode="chunked", chunk_by_key=["b", "t"])
    assert not list(out.rglob("*.parquet"))


def test_a_step_longer_than_a_hop_is_walked_in_hops_to_the_same_cuts(database_server, out, monkeypatch):
    source = database_server
    table, columns = source.keyed_table("text", 3000)
    monkeypatch.setattr(keywalk, "HOP_ROWS", 7)  # 700-row chunks: 100 hops each
    result = export(source, table, out, chunk_by_key=columns, chunk_size=700, parallel=2)
    rows = [c.rows for c in sorted(result.chunks, key=lambda c: c.index)]
    assert rows == [700, 700, 700, 700, 200], rows
    assert rows_in_files(result.files, [*columns, "v"]) == table_rows(source, table, columns)
