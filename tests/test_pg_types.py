"""Every mapped PostgreSQL type round-trips exactly through Parquet and CSV, NULLs and edge values included.

Independent readers: pyarrow and DuckDB read the files; psycopg reads the source.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import rivet
from tests.conftest import pg_url
from tests.typecheck import parse_csv_value, refused_columns, same, utc, wrong_columns

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Col:
    """A source column: its type, SQL literal values, and the expected Arrow type."""

    name: str
    pg_type: str
    values: tuple[str, ...]
    arrow: pa.DataType
    # SQL giving the value psycopg should return for comparison (default: the column itself).
    expect: str = "{c}"


ENUM = f"mood_{uuid.uuid4().hex[:8]}"
DOMAIN = f"posint_{uuid.uuid4().hex[:8]}"
UTC_TS = pa.timestamp("us", tz="UTC")

COLUMNS = [
    Col("c_bool", "boolean", ("true", "false"), pa.bool_()),
    Col("c_int2", "smallint", ("-32768", "32767", "0"), pa.int16()),
    Col("c_int4", "integer", ("-2147483648", "2147483647"), pa.int32()),
    Col("c_int8", "bigint", ("-9223372036854775808", "9223372036854775807"), pa.int64()),
    Col("c_oid", "oid", ("0", "4294967295"), pa.int64(), "{c}::bigint"),
    Col("c_float4", "real", ("1.5", "'NaN'", "'-Infinity'", "3.4028235e38", "1e-45"), pa.float32()),
    Col(
        "c_float8",
        "double precision",
        ("0.1", "'Infinity'", "-1.7976931348623157e308", "5e-324", "'NaN'"),
        pa.float64(),
    ),
    Col(
        "c_num38",
        "numeric(38,10)",
        ("1234567890123456789012345678.1234567890", "-9999999999999999999999999999.9999999999", "0", "0.0000000001"),
        pa.decimal128(38, 10),
    ),
    Col("c_num15", "numeric(15,2)", ("1.5", "-0.01", "9999999999999.99"), pa.decimal128(15, 2)),
    Col("c_num_negscale", "numeric(5,-2)", ("12345", "-9999900", "0"), pa.decimal128(7, 0)),
    Col("c_num_fraconly", "numeric(3,5)", ("0.00123", "-0.00999"), pa.decimal128(5, 5)),
    Col(
        "c_num60",
        "numeric(60,20)",
        ("1234567890123456789012345678901234567890.12345678901234567890", "-0.00000000000000000001"),
        pa.decimal256(60, 20),
    ),
    Col("c_text", "text", ("''", "'Grüße, 世界 🎉'", "E'a,\"b\"\\nc'", "'NULL'"), pa.string()),
    Col("c_varchar", "varchar(10)", ("'abc'", "''"), pa.string()),
    Col("c_bpchar", "char(5)", ("'ab'", "'abcde'"), pa.string()),
    Col("c_name", "name", ("'pg_class'",), pa.string()),
    Col("c_citext", "citext", ("'MiXeD'",), pa.string()),
    Col("c_bytea", "bytea", ("'\\x00ff10'::bytea", "''::bytea"), pa.binary()),
    Col("c_date", "date", ("'1969-07-20'", "'0001-01-01'", "'9999-12-31'", "'2000-01-01'"), pa.date32()),
    Col("c_time", "time", ("'00:00:00'", "'23:59:59.999999'", "'12:34:56.5'"), pa.time64("us")),
    Col(
        "c_ts",
        "timestamp",
        ("'1969-12-31 23:59:59.999999'", "'2024-03-10 02:30:00'", "'0001-01-01 00:00:00'", "'1900-02-28 12:00:00'"),
        pa.timestamp("us"),
    ),
    Col(
        "c_tstz",
        "timestamptz",
        (
            "'2024-03-10 01:59:59-05'",
            "'2024-03-10 03:00:00-04'",
            "'1901-12-13 20:45:52.000001+00'",
            "'1960-01-01 00:00:00+05:30'",
        ),
        UTC_TS,
    ),
    Col(
        "c_interval",
        "interval",
        (
            "'1 year 2 months 3 days 04:05:06.789'",
            "'-1 year -2 days -03:00:00.000001'",
            "'0'",
            "'1 mon -1 day 00:00:01'",
        ),
        pa.struct(
            [
                pa.field("months", pa.int32(), False),
                pa.field("days", pa.int32(), False),
                pa.field("microseconds", pa.int64(), False),
            ]
        ),
        "CASE WHEN {c} IS NOT NULL THEN json_build_object("
        "'months', (date_part('year', {c}) * 12 + date_part('month', {c}))::int, "
        "'days', date_part('day', {c})::int, "
        "'microseconds', ((date_part('hour', {c}) * 3600 + date_part('minute', {c}) * 60) * 1000000"
        " + date_part('microseconds', {c}))::bigint) END",
    ),
    Col(
        "c_uuid",
        "uuid",
        ("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"),
        pa.string(),
        "{c}::text",
    ),
    Col("c_json", "json", ('\'{"b": [1, 2.50], "a": null}\'', "'\"text\"'"), pa.string(), "{c}::text"),
    Col("c_jsonb", "jsonb", ('\'{"b": 1, "a": "ü"}\'', "'[]'"), pa.string(), "{c}::text"),
    Col("c_enum", ENUM, ("'happy'", "'sad'"), pa.string(), "{c}::text"),
    Col("c_domain", DOMAIN, ("1", "2147483647"), pa.int32()),
    Col("c_int_arr", "integer[]", ("'{1,NULL,3}'", "'{}'", "'{NULL}'"), pa.list_(pa.int32())),
    Col("c_text_arr", "text[]", ('\'{"a",NULL,"c,d",""}\'',), pa.list_(pa.string())),
    Col("c_num_arr", "numeric(10,2)[]", ("'{1.5,NULL,-99999999.99}'",), pa.list_(pa.decimal128(10, 2))),
    Col("c_tstz_arr", "timestamptz[]", ("ARRAY['2020-01-01 00:00:00+00'::timestamptz, NULL]",), pa.list_(UTC_TS)),
    Col("c_date_arr", "date[]", ("'{1999-12-31,NULL}'",), pa.list_(pa.date32())),
    Col("c_bool_arr", "boolean[]", ("'{t,f,NULL}'",), pa.list_(pa.bool_())),
    Col("c_uuid_arr", "uuid[]", ("'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'",), pa.list_(pa.string()), "{c}::text[]"),
    Col("c_float_arr", "double precision[]", ("'{1.5,NaN,-Infinity}'",), pa.list_(pa.float64())),
]
ROWS = max(len(c.values) for c in COLUMNS) + 1  # the last row is all NULL


@pytest.fixture(scope="module")
def type_zoo(pg_conn):
    """One table holding every mapped type; row i takes each column's i-th value (NULL past the end)."""
    pg_conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
    pg_conn.execute(f"CREATE TYPE {ENUM} AS ENUM ('sad', 'happy')")
    pg_conn.execute(f"CREATE DOMAIN {DOMAIN} AS integer CHECK (VALUE > 0)")
    table = f"zoo_{uuid.uuid4().hex[:8]}"
    cols = ", ".join(f"{c.name} {c.pg_type}" for c in COLUMNS)
    pg_conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, {cols})")
    for i in range(ROWS):
        values = ", ".join(c.values[i] if i < len(c.values) else "NULL" for c in COLUMNS)
        pg_conn.execute(f"INSERT INTO {table} VALUES ({i}, {values})")
    yield table
    pg_conn.execute(f"DROP TABLE {table}")
    pg_conn.execute(f"DROP TYPE {ENUM}")
    pg_conn.execute(f"DROP DOMAIN {DOMAIN}")


@pytest.fixture(scope="module")
def expected(pg_conn, type_zoo):
    """Column name -> list of source values, in id order (psycopg's reading)."""
    select = ", ".join(c.expect.format(c=c.name) for c in COLUMNS)
    rows = pg_conn.execute(f"SELECT {select} FROM {type_zoo} ORDER BY id").fetchall()
    out = {}
    for j, c in enumerate(COLUMNS):
        values = [utc(r[j]) for r in rows]
        if c.arrow == pa.float32():
            # psycopg widens real from its shortest text; compare as the float32 it is.
            values = [None if v is None else pa.scalar(v, pa.float32()).as_py() for v in values]
        out[c.name] = values
    return out


@pytest.fixture(scope="module")
def exports(type_zoo, tmp_path_factory):
    """The zoo exported once as Parquet and once as CSV."""
    base = tmp_path_factory.mktemp("zoo")
    query = f"SELECT * FROM {type_zoo} ORDER BY id"
    parquet = rivet.export(pg_url(), query=query, destination=str(base / "parquet"), name="zoo")
    csv = rivet.export(pg_url(), query=query, destination=str(base / "csv"), format="csv", name="zoo")
    return parquet, csv


def test_schema_is_exact_and_carries_source_types(exports):
    parquet, _ = exports
    table = pq.read_table(parquet.files[0])
    for c in COLUMNS:
        field = table.schema.field(c.name)
        assert field.type == c.arrow, c.name
        assert field.metadata[b"rivet.source_type"], c.name
    assert table.schema.field("c_num38").metadata[b"rivet.source_type"] == b"numeric(38,10)"
    assert table.schema.field("c_jsonb").metadata[b"rivet.logical_type"] == b"json"
    assert table.schema.field("c_uuid").metadata[b"rivet.logical_type"] == b"uuid"
    assert table.schema.field("c_enum").metadata[b"rivet.logical_type"] == b"enum"
    assert table.schema.field("c_interval").metadata[b"rivet.logical_type"] == b"interval"
    assert table.num_rows == ROWS


@pytest.mark.parametrize("col", COLUMNS, ids=lambda c: c.name)
def test_parquet_values_read_by_pyarrow(exports, expected, col):
    parquet, _ = exports
    actual = [utc(v) for v in pq.read_table(parquet.files[0], columns=[col.name]).column(0).to_pylist()]
    want = expected[col.name]
    assert all(same(e, a) for e, a in zip(want, actual, strict=True)), (want, actual)


# DuckDB's DECIMAL stops at 38 digits: it reads decimal(60,20) as a double, so only pyarrow checks it.
NOT_FOR_DUCKDB = {"c_num60"}


@pytest.mark.parametrize("col", [c for c in COLUMNS if c.name not in NOT_FOR_DUCKDB], ids=lambda c: c.name)
def test_parquet_values_read_by_duckdb(exports, expected, col):
    parquet, _ = exports
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(f"SELECT {col.name} FROM read_parquet('{parquet.files[0]}') ORDER BY id").fetchall()
    actual = [utc(r[0]) for r in rows]
    want = expected[col.name]
    assert all(same(e, a) for e, a in zip(want, actual, strict=True)), (want, actual)


def _csv_strings(path: Path) -> pa.Table:
    names = ["id", *[c.name for c in COLUMNS]]
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


@pytest.mark.parametrize("col", [c for c in COLUMNS if c.name != "c_interval"], ids=lambda c: c.name)
def test_csv_values(exports, expected, col):
    _, csv = exports
    texts = _csv_strings(Path(csv.files[0])).column(col.name).to_pylist()
    actual = [utc(parse_csv_value(t, col.arrow)) for t in texts]
    want = expected[col.name]
    assert all(same(e, a) for e, a in zip(want, actual, strict=True)), (want, actual)


def test_csv_interval_matches_postgres_iso_8601(pg_conn, exports, type_zoo):
    _, csv = exports
    pg_conn.execute("SET intervalstyle = iso_8601")
    try:
        want = [r[0] for r in pg_conn.execute(f"SELECT c_interval::text FROM {type_zoo} ORDER BY id")]
    finally:
        pg_conn.execute("RESET intervalstyle")
    assert _csv_strings(Path(csv.files[0])).column("c_interval").to_pylist() == want


def test_csv_empty_string_and_null_differ(exports):
    _, csv = exports
    text = Path(csv.files[0]).read_text(encoding="utf-8")
    first_row = text.splitlines()[1]
    assert first_row.split(",")[first_row.count(",") and 0] == "0"
    table = _csv_strings(Path(csv.files[0]))
    assert table.column("c_text").to_pylist()[0] == ""
    assert table.column("c_text").to_pylist()[-1] is None


SCALAR_DUCKDB_TYPES = {
    "c_int8": "BIGINT",
    "c_num38": "DECIMAL(38,10)",
    "c_num15": "DECIMAL(15,2)",
    "c_date": "DATE",
    "c_time": "TIME",
    "c_ts": "TIMESTAMP",
    "c_tstz": "TIMESTAMPTZ",
    "c_bool": "BOOLEAN",
    "c_text": "VARCHAR",
    "c_float8": "DOUBLE",
}


@pytest.mark.parametrize("name", sorted(SCALAR_DUCKDB_TYPES))
def test_csv_values_read_by_duckdb(exports, expected, name):
    _, csv = exports
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(
        f"SELECT CAST({name} AS {SCALAR_DUCKDB_TYPES[name]}) FROM read_csv('{csv.files[0]}', header=true, "
        "all_varchar=true, allow_quoted_nulls=false) ORDER BY CAST(id AS INTEGER)"
    ).fetchall()
    actual = [utc(r[0]) for r in rows]
    assert all(same(e, a) for e, a in zip(expected[name], actual, strict=True)), (expected[name], actual)


# Columns connectorx cannot read exactly: ``engine: connectorx`` refuses them by name.
NOT_FOR_CONNECTORX = {
    "c_oid", "c_num38", "c_num_negscale", "c_num60", "c_citext", "c_time", "c_interval", "c_json", "c_jsonb", "c_enum",
    "c_int_arr", "c_text_arr", "c_num_arr", "c_tstz_arr", "c_date_arr", "c_bool_arr", "c_uuid_arr", "c_float_arr",
}  # fmt: skip
CX_COLUMNS = [c for c in COLUMNS if c.name not in NOT_FOR_CONNECTORX]


def _source(engine: str = "native") -> dict[str, str]:
    return {"type": "postgres", "url": pg_url(), "engine": engine}


@pytest.fixture(scope="module")
def read_paths(type_zoo, tmp_path_factory) -> dict[str, pa.Table]:
    """The zoo read by every other reader (the cursor is ``exports``), as one table in id order.

    ``copy``: key-range chunks over binary COPY, two workers; ``pages``: physical page ranges
    of the table (TID scans), over COPY too; ``connectorx``: its exact columns, chunk by chunk.
    """
    base = tmp_path_factory.mktemp("zoo_paths")
    query = f"SELECT * FROM {type_zoo}"
    chunked = {"mode": "chunked", "chunk_column": "id", "chunk_size": 2, "parallel": 2}
    cx_query = f"SELECT id, {', '.join(c.name for c in CX_COLUMNS)} FROM {type_zoo}"
    runs = {
        "copy": rivet.export(_source(), query=query, destination=str(base / "copy"), name="zoo", **chunked),
        "pages": rivet.export(_source(), table=type_zoo, destination=str(base / "pages"), name="zoo", parallel=2),
        "connectorx": rivet.export(
            _source("connectorx"), query=cx_query, destination=str(base / "cx"), name="zoo", **chunked
        ),
    }
    assert runs["copy"].files and len(runs["copy"].files) > 1  # the chunks really were several reads
    assert runs["connectorx"].engine == "connectorx"  # no chunk fell back to the native reader
    return {path: pa.concat_tables(pq.read_table(f) for f in run.files).sort_by("id") for path, run in runs.items()}


@pytest.mark.parametrize("path", ["copy", "pages", "connectorx"])
def test_every_read_path_gives_the_source_values(read_paths, expected, path):
    table = read_paths[path]
    assert table.num_rows == ROWS
    columns = CX_COLUMNS if path == "connectorx" else COLUMNS
    assert table.column_names == ["id", *[c.name for c in columns]]
    wrong = wrong_columns(table, {c.name: c.arrow for c in columns}, expected)
    assert not wrong, wrong


def test_connectorx_refuses_by_name_what_it_cannot_read_exactly(type_zoo, tmp_path):
    with pytest.raises(rivet.ConfigError) as refused:
        rivet.export(_source("connectorx"), table=type_zoo, destination=str(tmp_path), name="zoo", parallel=2)
    assert refused_columns(refused.value) == NOT_FOR_CONNECTORX
    assert not list(tmp_path.iterdir())
