"""The native and connectorx readers give identical files wherever connectorx is eligible; elsewhere
``auto`` picks native, ``connectorx`` is refused, and a chunk connectorx cannot read exactly falls back."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import ConfigError, DataError
from tests.conftest import MYSQL_URL, pg_url
from tests.outputs import run_rivet

PG_ELIGIBLE = """CREATE TABLE {t} (id int, b boolean, i2 smallint, i4 integer, i8 bigint, f4 real,
    f8 double precision, n15 numeric(15,2), n28 numeric(28,10), txt text, vc varchar(10), ch char(4), by bytea,
    d date, ts timestamp, tz timestamptz, u uuid);
INSERT INTO {t} SELECT i, i % 2 = 0, i % 30000, i * 7, i::bigint * 1000000007, i / 8.0, i / 3.0, i * 1.25, i / 7.0,
    md5(i::text), left(md5(i::text), 5), 'x', decode(md5(i::text), 'hex'), date '2000-01-01' + i,
    timestamp '2001-02-03 04:05:06.789' + i * interval '1 minute',
    timestamptz '2001-02-03 04:05:06.789+02' + i * interval '1 second', md5(i::text)::uuid
    FROM generate_series(1, 5000) AS i;
INSERT INTO {t} (id) VALUES (0)"""

MY_ELIGIBLE = """CREATE TABLE {t} (id INT PRIMARY KEY, b TINYINT(1), ti TINYINT, us SMALLINT UNSIGNED, m MEDIUMINT,
    ub BIGINT UNSIGNED, f FLOAT, d DOUBLE, dec1 DECIMAL(15,2), dec2 DECIMAL(20,10) UNSIGNED, dt DATETIME(6), dd DATE,
    y YEAR, vc VARCHAR(20), tx TEXT, bn VARBINARY(8), e ENUM('a','b'), s SET('x','y'));
INSERT INTO {t} VALUES (1, 1, -128, 65535, -8388608, 18446744073709551615, 1.5, 0.1, -9999999999999.99,
    1234567890.0123456789, '2024-02-29 12:34:56.123456', '1000-01-01', 2155, 'Grüße 🎉', 'x', x'00ff', 'b', 'x,y'),
    (2, 0, 127, 0, 8388607, 0, -3.25, -1e300, 0.01, 0, '9999-12-31 23:59:59.999999', '9999-12-31', 1901,
     '', '', x'', 'a', ''),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"""


def read(result: rivet.ExportResult) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in result.files).sort_by("id")


def pg_source(engine: str) -> dict[str, str]:
    return {"type": "postgres", "url": pg_url(), "engine": engine}


def my_source(engine: str) -> dict[str, str]:
    return {"type": "mysql", "url": MYSQL_URL, "engine": engine}


def both(source, out: Path, **options) -> tuple[pa.Table, pa.Table, rivet.ExportResult]:
    native = rivet.export(source("native"), destination=str(out / "native"), **options)
    fast = rivet.export(source("connectorx"), destination=str(out / "cx"), **options)
    assert native.engine == "native"
    return read(native), read(fast), fast


@pytest.mark.postgres
def test_postgres_chunked_reads_are_identical_through_both_engines(pg_table, out):
    t = pg_table(PG_ELIGIBLE)
    native, fast, result = both(pg_source, out, table=t, mode="chunked", chunk_column="id", chunk_size=1500, parallel=2)
    assert result.engine == "connectorx"
    assert native.num_rows == 5001
    assert fast.schema.equals(native.schema, check_metadata=True), (fast.schema, native.schema)
    assert fast.equals(native)
    assert fast.schema.field("tz").type == pa.timestamp("us", tz="UTC")
    assert fast.schema.field("n15").type == pa.decimal128(15, 2)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("column", "why"),
    [
        ("12.345678901234::numeric(30,12)", "rounds decimals to decimal(38,10)"),
        ("123456789012345678901234567.1234567890::numeric(38,10)", "holds decimals in 28 digits"),
        ("interval '1 day'", "panics on interval"),
        ("'24:00:00'::time", "reads 24:00:00 as 00:00:00"),
    ],
    ids=["numeric(30,12)", "numeric(38,10)", "interval", "time"],
)
def test_postgres_auto_picks_native_where_connectorx_is_not_exact(pg_table, out, caplog, column, why):
    t = pg_table(f"CREATE TABLE {{t}} AS SELECT i AS id, {column} AS v FROM generate_series(1, 10) AS i")
    options = {"table": t, "mode": "chunked", "chunk_column": "id"}
    with caplog.at_level("INFO", logger="rivet"):
        result = rivet.export(pg_source("auto"), destination=str(out / "auto"), **options)
    assert result.engine == "native" and result.rows == 10
    assert why in caplog.text
    with pytest.raises(ConfigError, match=f"connectorx cannot read it exactly:\\n  - column v: .*{re.escape(why)}"):
        rivet.export(pg_source("connectorx"), destination=str(out / "cx"), **options)


@pytest.mark.postgres
def test_postgres_auto_uses_connectorx_for_eligible_chunked_exports(pg_table, out):
    t = pg_table(PG_ELIGIBLE)
    result = rivet.export(pg_source("auto"), table=t, destination=str(out), mode="chunked", chunk_column="id")
    assert result.engine == "connectorx" and result.rows == 5001


@pytest.mark.postgres
def test_postgres_single_stream_stays_on_the_cursor_reader(pg_table, out, caplog):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 10) AS i")
    with caplog.at_level("INFO", logger="rivet"):
        result = rivet.export(pg_source("auto"), table=t, destination=str(out))
    assert result.engine == "native" and "pages with a cursor" in caplog.text


@pytest.mark.postgres
def test_a_chunk_connectorx_cannot_read_falls_back_to_native(pg_table, out, caplog):
    # date '300000-01-01' is past connectorx's calendar; only the chunk holding it falls back.
    t = pg_table(
        "CREATE TABLE {t} AS SELECT i AS id, date '2000-01-01' + i AS d FROM generate_series(1, 3000) AS i;"
        "UPDATE {t} SET d = '300000-01-01' WHERE id = 2900"
    )
    with caplog.at_level("WARNING", logger="rivet"):
        result = rivet.export(
            pg_source("auto"), table=t, destination=str(out), mode="chunked", chunk_column="id", chunk_size=1000
        )
    assert result.engine == "connectorx+native"
    assert caplog.text.count("the native reader reads it") == 1
    table = read(result)
    assert table.column("id").to_pylist() == list(range(1, 3001))
    assert (
        table.column("d").cast(pa.int32()).to_pylist()[2899] == 108_853_222
    )  # days from 1970 to 300000-01-01, as PostgreSQL counts them


@pytest.mark.postgres
def test_connectorx_failing_mid_chunk_rewrites_the_part_natively(pg_table, out, caplog):
    # The value connectorx cannot carry sits in a later batch of a later chunk, after other chunks
    # and batches went into the part: the part is dropped and read again natively.
    t = pg_table(
        "CREATE TABLE {t} AS SELECT i AS id, date '2000-01-01' + i AS d FROM generate_series(1, 5000) AS i;"
        "UPDATE {t} SET d = '300000-01-01' WHERE id = 2900"
    )
    with caplog.at_level("WARNING", logger="rivet"):
        result = rivet.export(
            pg_source("connectorx"),
            table=t,
            destination=str(out),
            mode="chunked",
            chunk_column="id",
            chunk_size=1000,
            tuning={"batch_size": 200},
        )
    assert result.engine == "connectorx+native"
    assert "the native reader writes its part again and reads the rest" in caplog.text
    table = read(result)
    assert table.column("id").to_pylist() == list(range(1, 5001))
    assert table.column("d").cast(pa.int32()).to_pylist()[2899] == 108_853_222
    assert len(result.files) == 1


@pytest.mark.postgres
def test_infinity_read_by_connectorx_is_caught_and_refused_by_native(pg_table, out):
    t = pg_table("CREATE TABLE {t} AS SELECT 1 AS id, 'infinity'::timestamp AS ts")
    with pytest.raises(rivet.RivetError, match="infinity"):
        rivet.export(pg_source("connectorx"), table=t, destination=str(out), mode="chunked", chunk_column="id")
    assert not (out / "_SUCCESS").exists()


@pytest.mark.mysql
def test_mysql_reads_are_identical_through_both_engines(my_table, out):
    t = my_table(MY_ELIGIBLE)
    native, fast, result = both(my_source, out, table=t, mode="chunked", chunk_column="id", parallel=2)
    assert result.engine == "connectorx"
    assert fast.schema.equals(native.schema, check_metadata=True), (fast.schema, native.schema)
    assert fast.equals(native)
    assert fast.column("ub").to_pylist()[0] == 2**64 - 1


@pytest.mark.mysql
def test_mysql_tinyint1_holding_2_is_never_read_as_true(my_table, out):
    t = my_table("CREATE TABLE {t} (id INT PRIMARY KEY, b TINYINT(1));\nINSERT INTO {t} VALUES (1, 2)")
    with pytest.raises(DataError, match="not a boolean"):
        rivet.export(my_source("connectorx"), table=t, destination=str(out))
    assert not (out / "_SUCCESS").exists()


@pytest.mark.mysql
def test_mysql_time_makes_auto_choose_native(my_table, out):
    t = my_table("CREATE TABLE {t} (id INT PRIMARY KEY, tm TIME);\nINSERT INTO {t} VALUES (1, '-838:59:59')")
    result = rivet.export(my_source("auto"), table=t, destination=str(out))
    assert result.engine == "native"
    assert pq.read_table(result.files[0]).column("tm").to_pylist()[0].total_seconds() == -(838 * 3600 + 59 * 60 + 59)


def test_sqlite_reads_are_identical_through_both_engines(tmp_path):
    db = tmp_path / "s.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, r REAL, x TEXT, b BLOB)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?)", [(i, i / 3, f"é{i}", bytes([i % 256])) for i in range(1, 2001)]
        )
    native = rivet.export(
        {"type": "sqlite", "path": str(db), "engine": "native"}, table="t", destination=str(tmp_path / "n")
    )
    fast = rivet.export(
        {"type": "sqlite", "path": str(db), "engine": "auto"}, table="t", destination=str(tmp_path / "c")
    )
    assert fast.engine == "connectorx"
    assert read(fast).equals(read(native)) and read(fast).schema.equals(read(native).schema, check_metadata=True)


@pytest.mark.postgres
def test_engine_is_in_the_run_summary(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 100) AS i")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source:\n  type: postgres\n  url: "{pg_url()}"\n  engine: auto\nexports:\n'
        f"  - name: a\n    table: {t}\n    mode: chunked\n    chunk_column: id\n    destination: out\n"
    )
    proc = run_rivet("run", "-c", str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["exports"][0]["engine"] == "connectorx"
    plain = run_rivet("run", "-c", str(config))
    assert "via connectorx" in plain.stdout + plain.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["libpq key=value string", "URL without a database, PGDATABASE set"])
def test_connectorx_connects_where_the_native_reader_does(pg_table, tmp_path, monkeypatch, form):
    # connectorx is given the settings rivet resolved, not the string the user wrote: a key=value string
    # reads through it, and the database comes from PGDATABASE as it does for the native reader.
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS v FROM generate_series(1, 3000) AS i")
    authority = pg_url().split("://", 1)[1].split("/", 1)[0]
    host, port = authority.rsplit("@", 1)[1].rsplit(":", 1)
    if form.startswith("libpq"):
        url = f"host={host} port={port} user=postgres dbname=test sslmode=disable"
    else:
        monkeypatch.setenv("PGDATABASE", "test")
        url = f"postgresql://postgres@{host}:{port}?sslmode=disable"
    source = {"type": "postgres", "url": url, "engine": "connectorx"}
    result = rivet.export(source, table=t, mode="chunked", chunk_column="id", destination=str(tmp_path))
    assert result.engine == "connectorx"
    assert read(result).column("v").to_pylist() == [hashlib.md5(str(i).encode()).hexdigest() for i in range(1, 3001)]


@pytest.mark.postgres
def test_connectorx_reads_over_a_postgres_unix_socket(pg_table, tmp_path):
    import psycopg

    with psycopg.connect(pg_url()) as conn:
        row = conn.execute("SHOW unix_socket_directories").fetchone()
    assert row is not None
    directory = row[0].split(",")[0].strip()
    if not directory.startswith("/"):
        pytest.skip(f"the server listens on no Unix socket directory ({row[0]!r})")
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS v FROM generate_series(1, 2000) AS i")
    port = int(pg_url().split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    source = {"type": "postgres", "host": directory, "port": port, "user": "postgres", "database": "test"}
    result = rivet.export(
        {**source, "engine": "connectorx"}, table=t, mode="chunked", chunk_column="id", destination=str(tmp_path / "cx")
    )
    native = rivet.export(
        {**source, "engine": "native"}, table=t, mode="chunked", chunk_column="id", destination=str(tmp_path / "n")
    )
    assert result.engine == "connectorx"
    assert read(result).equals(read(native)) and read(result).num_rows == 2000
