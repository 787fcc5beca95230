"""rivet.read / read_polars / stream, and results read back: the rows and exact types of the source."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import sqlite3
from decimal import Decimal

import duckdb
import polars as pl
import pyarrow as pa
import pytest

import rivet
from rivet.errors import ConfigError, UnsupportedTypeError
from tests.conftest import MYSQL_URL, my_query, pg_url


@pytest.fixture
def pg_orders(pg, pg_table) -> str:
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, amount numeric(12,3), at timestamptz, note text)")
    pg.execute(
        f"INSERT INTO {table} SELECT i, i * 1.125, timestamptz '2024-01-01 00:00+00' + i * interval '1 minute', "
        "CASE WHEN i % 7 = 0 THEN NULL ELSE 'n' || i END FROM generate_series(1, 20000) i"
    )
    pg.execute(f"ANALYZE {table}")
    return table


def _source_rows(pg, table: str) -> collections.Counter:
    return collections.Counter(pg.execute(f"SELECT id, amount, at, note FROM {table}").fetchall())


def _rows(table: pa.Table) -> collections.Counter:
    return collections.Counter(zip(*(table.column(c).to_pylist() for c in ("id", "amount", "at", "note")), strict=True))


@pytest.mark.postgres
@pytest.mark.parametrize(
    "how",
    [{}, {"parallel": 2}, {"parallel": 2, "chunk_column": "id", "as_query": True}],
    ids=["one-stream", "pages", "key-ranges-of-a-query"],
)
def test_read_gives_every_row_with_exact_types(pg, pg_orders, how):
    options = dict(how)
    as_query = options.pop("as_query", False)
    target = {"query": f"SELECT * FROM {pg_orders}"} if as_query else {"table": pg_orders}
    table = rivet.read(pg_url(), **target, **options)
    assert table.schema.field("amount").type == pa.decimal128(12, 3)
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert _rows(table) == _source_rows(pg, pg_orders)
    assert table.num_rows == 20000


@pytest.mark.postgres
def test_read_polars_and_stream(pg, pg_orders):
    frame = rivet.read_polars(pg_url(), table=pg_orders, parallel=2)
    assert frame.schema["amount"] == pl.Decimal(12, 3) and frame.height == 20000
    assert frame["amount"].sum() == Decimal("225011250.000")

    stream = rivet.stream(pg_url(), query=f"SELECT id, amount FROM {pg_orders} ORDER BY id", tuning={"batch_size": 500})
    reader = pa.RecordBatchReader.from_stream(stream)
    batches = list(reader)
    assert len(batches) >= 40 and max(b.num_rows for b in batches) <= 500  # bounded batches, one at a time
    assert sum(b.num_rows for b in batches) == 20000
    with pytest.raises(RuntimeError, match="consumed already"):
        pa.RecordBatchReader.from_stream(stream)
    relation = duckdb.from_arrow(rivet.stream(pg_url(), query=f"SELECT id FROM {pg_orders}"))
    assert relation.aggregate("count(*), sum(id)").fetchone() == (20000, 200010000)


@pytest.mark.postgres
@pytest.mark.parametrize("parallel", [1, 2], ids=["one-stream", "pages"])
def test_read_polars_holds_every_text_value_exactly(pg, pg_table, parallel):
    # Text reaches polars as views over the decoded bytes: values of up to 12 bytes live in the
    # view itself, longer ones point into the buffer; both, NULL, empty and multibyte read back.
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, short text, long varchar(200), raw bytea, n int)")
    pg.execute(
        f"INSERT INTO {table} SELECT i, "
        "CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'é' || i ELSE 'twelve bytes' END, "
        "CASE WHEN i % 11 = 0 THEN NULL ELSE repeat('ü', i % 40) || ' value ' || i END, "
        "decode(md5(i::text), 'hex'), i * 3 FROM generate_series(1, 30000) i"
    )
    pg.execute(f"ANALYZE {table}")
    frame = rivet.read_polars(pg_url(), table=table, parallel=parallel)
    assert frame.schema["short"] == pl.String and frame.schema["raw"] == pl.Binary
    source = {r[0]: (r[1], r[2], bytes(r[3]), r[4]) for r in pg.execute(f"SELECT * FROM {table}").fetchall()}
    assert {r[0]: r[1:] for r in frame.iter_rows()} == source
    # rivet.read keeps the types of an export: text is (large) string, not views.
    assert rivet.read(pg_url(), table=table).schema.field("short").type in (pa.string(), pa.large_string())


@pytest.mark.postgres
def test_reads_refuse_what_exports_refuse(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, pt point)")
    pg.execute(f"INSERT INTO {table} VALUES (1, point(1, 2))")
    with pytest.raises(UnsupportedTypeError, match="pt"):
        rivet.read(pg_url(), table=table)
    assert rivet.read(pg_url(), table=table, columns={"pt": "text"}).column("pt").to_pylist() == ["(1,2)"]
    with pytest.raises(ConfigError, match="chunk_column"):
        rivet.read(pg_url(), query=f"SELECT * FROM {table}", parallel=2)
    db = tmp_path / "db.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
    with pytest.raises(ConfigError, match="need a postgres or mysql source"):
        rivet.read(str(db), table="t", parallel=2)


@pytest.mark.mysql
def test_read_on_mariadb_in_key_ranges(my_table, my_conn):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY, price decimal(10,2), at datetime(6))")
    with my_conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} VALUES (%s, %s, %s)",
            [(i, Decimal(i) / 4, dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i)) for i in range(1, 3001)],
        )
    read = rivet.read(MYSQL_URL, table=table, parallel=2)
    assert read.schema.field("price").type == pa.decimal128(10, 2)
    got = collections.Counter(zip(*(read.column(c).to_pylist() for c in ("id", "price", "at")), strict=True))
    assert got == collections.Counter(my_query(my_conn, f"SELECT id, price, at FROM {table}"))


@pytest.mark.mysql
def test_reads_of_a_uuid_keyed_mariadb_table_in_keyset_ranges(my_table, my_conn):
    # parallel on a table whose primary key is a UUID: keyset ranges on it; a query names its key.
    table = my_table(
        "CREATE TABLE {t} (id UUID PRIMARY KEY, n int NOT NULL);\nINSERT INTO {t} SELECT UUID(), seq FROM seq_1_to_3000"
    )
    expected = collections.Counter(my_query(my_conn, f"SELECT id, n FROM {table}"))
    by_table = rivet.read(MYSQL_URL, table=table, parallel=2)
    by_query = rivet.read_polars(MYSQL_URL, query=f"SELECT id, n FROM {table}", parallel=2, chunk_by_key="id")
    for read in (by_table, by_query.to_arrow()):
        got = zip(read.column("id").to_pylist(), read.column("n").to_pylist(), strict=True)
        assert collections.Counter(got) == expected


def test_read_a_sqlite_file_and_read_back_an_export(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER, name TEXT)")
        conn.executemany(
            "INSERT INTO items VALUES (?, ?)", [(i, hashlib.md5(str(i).encode()).hexdigest()) for i in range(1, 5001)]
        )
    table = rivet.read(str(db), query="SELECT id, name FROM items WHERE id > 50")
    assert table.column("id").to_pylist() == list(range(51, 5001))
    result = rivet.export(
        str(db), table="items", destination=str(tmp_path / "out"), max_file_size="16KB", tuning={"batch_size": 500}
    )
    assert len(result.files) > 1
    assert sorted(result.to_arrow().column("id").to_pylist()) == list(range(1, 5001))
    assert result.to_polars().height == 5000
    assert result.scan().filter(pl.col("id") > 4990).collect().height == 10
    csv = rivet.export(str(db), table="items", destination=str(tmp_path / "csv"), format="csv")
    with pytest.raises(ConfigError, match="wrote CSV"):
        csv.to_arrow()


def test_misusing_a_native_reader_is_a_rivet_error(tmp_path):
    """A reader consumed twice, or bad options, raise errors of rivet's tree (not bare RuntimeError)."""
    from rivet import _native
    from rivet.errors import InternalError, RivetError

    db = tmp_path / "db.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
    from rivet.config.tuning import PROFILES
    from rivet.sources.base import scan_options

    reader = _native.scan_sqlite(str(db), "SELECT id FROM t", scan_options(PROFILES["balanced"]), {})
    pa.RecordBatchReader.from_stream(reader).read_all()
    with pytest.raises(InternalError, match="already consumed") as raised:
        pa.RecordBatchReader.from_stream(reader)
    assert isinstance(raised.value, RivetError) and isinstance(raised.value, RuntimeError)
    with pytest.raises(ConfigError, match="unknown read method"):
        _native.scan_sqlite(str(db), "SELECT id FROM t", {**scan_options(PROFILES["balanced"]), "method": "x"}, {})


def test_notebooks_show_results_as_tables():
    from rivet.execution.results import ExportResult, RunResult

    good = ExportResult(name="orders", run_id="r1", status="success", duration_s=1.5)
    bad = ExportResult(name="<evil>", run_id="r2", status="failed", error="boom\nsecond line", exit_code=1)
    shown = RunResult([good, bad], 2.0)._repr_html_()
    assert "<td>orders</td><td>success</td>" in shown and "&lt;evil&gt;" in shown and "second line" not in shown
    assert "1 of 2 exports succeeded" in shown and "exit code 1" in shown
    assert "<th style='text-align:left'>status</th><td>success</td>" in good._repr_html_()
