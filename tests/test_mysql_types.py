"""Every mapped MySQL/MariaDB type round-trips exactly through Parquet and CSV, edge values included.

Independent readers: pyarrow and DuckDB read the files; PyMySQL reads the source (in UTC).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import DataError, UnsupportedTypeError
from tests.conftest import MYSQL_URL, my_query
from tests.typecheck import parse_csv_value, refused_columns, same, utc, wrong_columns

pytestmark = pytest.mark.mysql


def _keep(v: Any) -> Any:
    return v


def _float32(v: Any) -> Any:
    return None if v is None else pa.scalar(v, pa.float32()).as_py()


def _aware(v: Any) -> Any:
    return None if v is None else v.replace(tzinfo=dt.timezone.utc)


def _bool(v: Any) -> Any:
    return None if v is None else bool(v)


@dataclass(frozen=True)
class Col:
    """A source column: its type, SQL literal values, the expected Arrow type, how to read the source."""

    name: str
    my_type: str
    values: tuple[str, ...]
    arrow: pa.DataType
    expect: str = "{c}"  # SQL giving the value PyMySQL should return for comparison
    convert: Callable[[Any], Any] = _keep


COLUMNS = [
    Col("c_bool", "TINYINT(1)", ("1", "0"), pa.bool_(), convert=_bool),
    Col("c_tiny", "TINYINT", ("-128", "127", "0"), pa.int8()),
    Col("c_utiny", "TINYINT UNSIGNED", ("255", "0"), pa.uint8()),
    Col("c_small", "SMALLINT", ("-32768", "32767"), pa.int16()),
    Col("c_usmall", "SMALLINT UNSIGNED", ("65535",), pa.uint16()),
    Col("c_medium", "MEDIUMINT", ("-8388608", "8388607"), pa.int32()),
    Col("c_umedium", "MEDIUMINT UNSIGNED", ("16777215",), pa.uint32()),
    Col("c_int", "INT", ("-2147483648", "2147483647"), pa.int32()),
    Col("c_uint", "INT UNSIGNED", ("4294967295", "0"), pa.uint32()),
    Col("c_big", "BIGINT", ("-9223372036854775808", "9223372036854775807"), pa.int64()),
    Col("c_ubig", "BIGINT UNSIGNED", ("18446744073709551615", "9223372036854775808", "0"), pa.uint64()),
    Col(
        "c_float",
        "FLOAT",
        ("1.5", "-3.4028234663852886e38", "1.17549435e-38"),
        pa.float32(),
        "CAST({c} AS DOUBLE)",
        _float32,
    ),
    Col("c_double", "DOUBLE", ("0.1", "-1.7976931348623157e308", "2.2250738585072014e-308"), pa.float64()),
    Col("c_dec", "DECIMAL(15,2)", ("1.5", "-0.01", "9999999999999.99"), pa.decimal128(15, 2)),
    Col("c_udec", "DECIMAL(10,3) UNSIGNED", ("9999999.999", "0.001"), pa.decimal128(10, 3)),
    Col("c_dec38", "DECIMAL(38,0)", ("99999999999999999999999999999999999999", "-1"), pa.decimal128(38, 0)),
    Col(
        "c_dec65",
        "DECIMAL(65,30)",
        ("12345678901234567890123456789012345.123456789012345678901234567890", "-0.000000000000000000000000000001"),
        pa.decimal256(65, 30),
    ),
    Col("c_date", "DATE", ("'1000-01-01'", "'9999-12-31'", "'1969-07-20'"), pa.date32()),
    Col("c_dt", "DATETIME", ("'1000-01-01 00:00:00'", "'9999-12-31 23:59:59'"), pa.timestamp("us")),
    Col("c_dt6", "DATETIME(6)", ("'2024-02-29 12:34:56.123456'", "'1969-12-31 23:59:59.999999'"), pa.timestamp("us")),
    Col("c_dt3", "DATETIME(3)", ("'2000-01-01 00:00:00.999'",), pa.timestamp("us")),
    Col(
        "c_ts",
        "TIMESTAMP(6) NULL",
        ("'1970-01-01 00:00:01'", "'2038-01-19 03:14:07.999999'", "'2024-03-10 07:30:00.5'"),
        pa.timestamp("us", tz="UTC"),
        convert=_aware,
    ),
    Col(
        "c_time",
        "TIME(6)",
        ("'-838:59:59'", "'838:59:59'", "'00:00:00.5'", "'-00:00:01.250000'", "'25:00:00'"),
        pa.duration("us"),
    ),
    Col("c_year", "YEAR", ("1901", "2155", "2024"), pa.int16()),
    Col("c_char", "CHAR(5)", ("'ab'", "'abcde'", "''"), pa.string()),
    Col("c_varchar", "VARCHAR(50)", ("'Grüße, 世界 🎉'", "''", "'a,\"b\"\\nc'", "'NULL'"), pa.string()),
    Col("c_text", "TEXT", ("'🎉'", "REPEAT('x', 60000)"), pa.string()),
    Col("c_mtext", "MEDIUMTEXT", ("REPEAT('é', 200000)",), pa.string()),
    Col("c_bin", "BINARY(4)", ("x'00ff'", "x'61626364'"), pa.binary()),
    Col("c_varbin", "VARBINARY(10)", ("x'00ff10'", "x''"), pa.binary()),
    Col("c_blob", "BLOB", ("x'deadbeef'",), pa.binary()),
    Col("c_bit1", "BIT(1)", ("b'1'", "b'0'"), pa.bool_(), "CAST({c} AS UNSIGNED)", _bool),
    Col("c_bit10", "BIT(10)", ("b'1111111111'", "b'0'", "b'1000000000'"), pa.uint64(), "CAST({c} AS UNSIGNED)"),
    Col("c_bit64", "BIT(64)", ("x'FFFFFFFFFFFFFFFF'",), pa.uint64(), "CAST({c} AS UNSIGNED)"),
    Col("c_enum", "ENUM('a','b','ç')", ("'ç'", "'a'"), pa.string()),
    Col("c_set", "SET('x','y','z')", ("'x,z'", "''"), pa.string()),
    Col("c_json", "JSON", ('\'{"b": [1, 2.50], "a": null}\'', "'\"ü\"'"), pa.string()),
]
ROWS = max(len(c.values) for c in COLUMNS) + 1  # the last row is all NULL


@pytest.fixture(scope="module")
def type_zoo(my_conn):
    """One table holding every mapped type; row i takes each column's i-th value (NULL past the end)."""
    table = f"zoo_{uuid.uuid4().hex[:8]}"
    cols = ", ".join(f"{c.name} {c.my_type}" for c in COLUMNS)
    my_query(my_conn, f"CREATE TABLE {table} (id INT PRIMARY KEY, {cols}) DEFAULT CHARSET=utf8mb4")
    for i in range(ROWS):
        values = ", ".join(c.values[i] if i < len(c.values) else "NULL" for c in COLUMNS)
        my_query(my_conn, f"INSERT INTO {table} VALUES ({i}, {values})")
    yield table
    my_query(my_conn, f"DROP TABLE {table}")


@pytest.fixture(scope="module")
def expected(my_conn, type_zoo):
    """Column name -> list of source values, in id order (PyMySQL's reading)."""
    select = ", ".join(c.expect.format(c=c.name) for c in COLUMNS)
    rows = my_query(my_conn, f"SELECT {select} FROM {type_zoo} ORDER BY id")
    return {c.name: [c.convert(r[j]) for r in rows] for j, c in enumerate(COLUMNS)}


@pytest.fixture(scope="module")
def exports(type_zoo, tmp_path_factory):
    """The zoo exported once as Parquet and once as CSV, with small batches to cross batch edges."""
    base = tmp_path_factory.mktemp("myzoo")
    query = f"SELECT * FROM {type_zoo} ORDER BY id"
    tuning = {"batch_size": 2}
    parquet = rivet.export(MYSQL_URL, query=query, destination=str(base / "parquet"), name="zoo", tuning=tuning)
    csv = rivet.export(MYSQL_URL, query=query, destination=str(base / "csv"), format="csv", name="zoo", tuning=tuning)
    return parquet, csv


def test_schema_is_exact_and_carries_source_types(exports):
    parquet, _ = exports
    table = pq.read_table(parquet.files[0])
    assert table.num_rows == ROWS
    for c in COLUMNS:
        assert table.schema.field(c.name).type == c.arrow, c.name
    meta = {c.name: table.schema.field(c.name).metadata or {} for c in COLUMNS}
    assert meta["c_ubig"][b"rivet.source_type"] == b"bigint unsigned"
    assert meta["c_dec65"][b"rivet.source_type"] == b"decimal(65,30)"
    assert meta["c_bool"][b"rivet.source_type"] == b"tinyint(1)"
    assert meta["c_enum"][b"rivet.logical_type"] == b"enum"


@pytest.mark.parametrize("col", COLUMNS, ids=lambda c: c.name)
def test_parquet_values_read_by_pyarrow(exports, expected, col):
    parquet, _ = exports
    actual = [utc(v) for v in pq.read_table(parquet.files[0], columns=[col.name]).column(0).to_pylist()]
    want = [utc(v) for v in expected[col.name]]
    assert all(same(e, a) for e, a in zip(want, actual, strict=True)), (want, actual)


# DuckDB's DECIMAL stops at 38 digits (it reads decimal(65,30) as a double), and it has no
# duration type (it refuses the Parquet column); pyarrow checks those.
NOT_FOR_DUCKDB = {"c_dec65", "c_time"}


@pytest.mark.parametrize("col", [c for c in COLUMNS if c.name not in NOT_FOR_DUCKDB], ids=lambda c: c.name)
def test_parquet_values_read_by_duckdb(exports, expected, col):
    parquet, _ = exports
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(f"SELECT {col.name} FROM read_parquet('{parquet.files[0]}') ORDER BY id").fetchall()
    actual = [utc(r[0]) for r in rows]
    want = [utc(v) for v in expected[col.name]]
    assert all(same(e, a) for e, a in zip(want, actual, strict=True)), (want, actual)


def _csv_strings(path: Path) -> pa.Table:
    names = ["id", *[c.name for c in COLUMNS]]
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 22),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


@pytest.mark.parametrize("col", [c for c in COLUMNS if c.name != "c_time"], ids=lambda c: c.name)
def test_csv_values(exports, expected, col):
    _, csv = exports
    texts = _csv_strings(Path(csv.files[0])).column(col.name).to_pylist()
    actual = [utc(parse_csv_value(t, col.arrow)) for t in texts]
    want = [utc(v) for v in expected[col.name]]
    assert all(same(e, a) for e, a in zip(want, actual, strict=True)), (want, actual)


def test_csv_time_is_written_as_mysql_writes_it(my_conn, exports, type_zoo):
    _, csv = exports
    want = [r[0] for r in my_query(my_conn, f"SELECT CAST(c_time AS CHAR) FROM {type_zoo} ORDER BY id")]
    # MySQL prints every TIME(6) with six fraction digits; rivet writes the fraction only when there is one.
    want = [None if w is None else w.removesuffix(".000000") for w in want]
    assert _csv_strings(Path(csv.files[0])).column("c_time").to_pylist() == want


def test_tinyint1_outside_0_and_1_is_refused_not_coerced(my_table, tmp_path):
    t = my_table("CREATE TABLE {t} (id INT, flag TINYINT(1));\nINSERT INTO {t} VALUES (1, 1), (2, 2)")
    with pytest.raises(DataError, match=r"value 2 in a TINYINT\(1\) column is not a boolean"):
        rivet.export(MYSQL_URL, table=t, destination=str(tmp_path / "out"))
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    # The documented way out: read it as a number.
    result = rivet.export(
        MYSQL_URL, query=f"SELECT id, CAST(flag AS SIGNED) AS flag FROM {t}", destination=str(tmp_path / "ok")
    )
    assert pq.read_table(result.files[0]).column("flag").to_pylist() == [1, 2]


def test_zero_dates_are_refused_with_the_way_out(my_conn, my_table, tmp_path):
    my_query(my_conn, "SET SESSION sql_mode = ''")
    try:
        t = my_table(
            "CREATE TABLE {t} (id INT, d DATE, ts DATETIME);\n"
            "INSERT INTO {t} VALUES (1, '0000-00-00', '2024-01-00 10:00:00'), (2, '2024-05-06', '2024-05-06 07:08:09')"
        )
    finally:
        my_query(my_conn, "SET SESSION sql_mode = DEFAULT")
    with pytest.raises(DataError, match=r"zero or partial date '0000-00-00'.*NULLIF"):
        rivet.export(MYSQL_URL, table=t, destination=str(tmp_path / "out"))
    assert not (tmp_path / "out" / "_SUCCESS").exists()

    as_null = rivet.export(
        MYSQL_URL,
        query=f"SELECT id, NULLIF(d, '0000-00-00') AS d FROM {t} ORDER BY id",
        destination=str(tmp_path / "null"),
    )
    assert pq.read_table(as_null.files[0]).column("d").to_pylist() == [None, dt.date(2024, 5, 6)]

    as_text = rivet.export(
        MYSQL_URL,
        query=f"SELECT * FROM {t} ORDER BY id",
        destination=str(tmp_path / "text"),
        columns={"d": "text", "ts": "text"},
    )
    table = pq.read_table(as_text.files[0])
    assert table.column("d").to_pylist() == ["0000-00-00", "2024-05-06"]
    assert table.column("ts").to_pylist() == ["2024-01-00 10:00:00", "2024-05-06 07:08:09"]


def test_decimal_override_narrows_and_refuses_overflow(my_table, tmp_path):
    t = my_table("CREATE TABLE {t} (id INT, v DECIMAL(30,4));\nINSERT INTO {t} VALUES (1, 123.4567), (2, NULL)")
    result = rivet.export(MYSQL_URL, table=t, destination=str(tmp_path / "ok"), columns={"v": "decimal(10,4)"})
    col = pq.read_table(result.files[0]).column("v")
    assert col.type == pa.decimal128(10, 4)
    assert col.to_pylist() == [decimal.Decimal("123.4567"), None]
    with pytest.raises(DataError, match="v"):
        rivet.export(MYSQL_URL, table=t, destination=str(tmp_path / "bad"), columns={"v": "decimal(4,2)"})


def test_geometry_is_refused_naming_the_column(my_table, tmp_path):
    t = my_table("CREATE TABLE {t} (id INT, g POINT);\nINSERT INTO {t} VALUES (1, POINT(1, 2))")
    with pytest.raises(UnsupportedTypeError, match=r"g.*geometry.*ST_AsText"):
        rivet.export(MYSQL_URL, table=t, destination=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_geometry_read_as_text_is_its_wkt(my_table, tmp_path):
    t = my_table("CREATE TABLE {t} (id INT, g POINT);\nINSERT INTO {t} VALUES (1, POINT(1, 2)), (2, NULL)")
    result = rivet.export(MYSQL_URL, table=t, destination=str(tmp_path / "out"), columns={"g": "text"})
    assert pq.read_table(result.files[0]).column("g").to_pylist() == ["POINT(1 2)", None]


# Columns connectorx cannot read exactly: ``engine: connectorx`` refuses them by name.
NOT_FOR_CONNECTORX = {"c_dec38", "c_dec65", "c_ts", "c_time", "c_bit1", "c_bit10", "c_bit64"}
CX_COLUMNS = [c for c in COLUMNS if c.name not in NOT_FOR_CONNECTORX]


def _source(engine: str = "native") -> dict[str, str]:
    return {"type": "mysql", "url": MYSQL_URL, "engine": engine}


@pytest.fixture(scope="module")
def read_paths(type_zoo, tmp_path_factory) -> dict[str, pa.Table]:
    """The zoo read by the other readers (the single stream is ``exports``), as one table in id order.

    ``chunked``: key-range chunks, two workers; ``connectorx``: its exact columns, chunk by chunk.
    """
    base = tmp_path_factory.mktemp("myzoo_paths")
    chunked = {"mode": "chunked", "chunk_column": "id", "chunk_size": 2, "parallel": 2}
    cx_query = f"SELECT id, {', '.join(c.name for c in CX_COLUMNS)} FROM {type_zoo}"
    runs = {
        "chunked": rivet.export(
            _source(), query=f"SELECT * FROM {type_zoo}", destination=str(base / "chunked"), name="zoo", **chunked
        ),
        "connectorx": rivet.export(
            _source("connectorx"), query=cx_query, destination=str(base / "cx"), name="zoo", **chunked
        ),
    }
    assert len(runs["chunked"].files) > 1  # the chunks really were several reads
    assert runs["connectorx"].engine == "connectorx"  # no chunk fell back to the native reader
    return {path: pa.concat_tables(pq.read_table(f) for f in run.files).sort_by("id") for path, run in runs.items()}


@pytest.mark.parametrize("path", ["chunked", "connectorx"])
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
