"""meta_columns: _rivet_exported_at and _rivet_row_hash, read back from the written files.

The expected hashes come from an implementation of the documented encoding written
here in Python (README "Meta columns"), independent of the native one.
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import xxhash

import rivet
from rivet.errors import ConfigError
from tests.conftest import MYSQL_URL, pg_url, visible_parts

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def encode(value: object) -> bytes:
    """The documented canonical encoding of one value."""
    if value is None:
        return b"\x00"
    if isinstance(value, bool):
        return b"b" + bytes([value])
    if isinstance(value, int):
        return b"i" + value.to_bytes(16, "little", signed=True)
    if isinstance(value, float):
        return b"f" + struct.pack("<d", 0.0 if value == 0 else value)
    if isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.normalize().as_tuple()
        unscaled = int("".join(map(str, digits))) * (-1 if sign else 1)
        scale = -int(exponent)
        if scale < 0:  # normalize() turned 100 into 1E+2: scale 0 keeps the zeros
            unscaled, scale = unscaled * 10**-scale, 0
        return b"d" + unscaled.to_bytes(32, "little", signed=True) + struct.pack("<b", scale)
    if isinstance(value, str):
        raw = value.encode()
        return b"s" + struct.pack("<Q", len(raw)) + raw
    if isinstance(value, bytes):
        return b"x" + struct.pack("<Q", len(value)) + value
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        delta = aware - EPOCH
        seconds = delta.days * 86400 + delta.seconds
        return b"T" + struct.pack("<qI", seconds, delta.microseconds * 1000)
    if isinstance(value, dt.date):
        return b"D" + struct.pack("<q", (value - dt.date(1970, 1, 1)).days)
    raise TypeError(type(value))


def expected_hash(row: tuple[object, ...]) -> int:
    digest = xxhash.xxh3_64_intdigest(b"".join(encode(v) for v in row))
    return struct.unpack("<q", struct.pack("<Q", digest))[0]


ROWS = [
    (1, "alpha", decimal.Decimal("12.50"), dt.datetime(2024, 1, 2, 3, 4, 5, 600000), dt.date(2024, 1, 2), True),
    (2, "", decimal.Decimal("-0.01"), dt.datetime(1969, 12, 31, 23, 59, 59, 500000), dt.date(1969, 12, 31), False),
    (3, None, None, None, None, None),
    (4, "héllo\x1fworld", decimal.Decimal("100"), dt.datetime(2038, 1, 19, 3, 14, 8), dt.date(2100, 2, 28), True),
]


def _pg_source(pg_table) -> str:
    table = pg_table(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamp, day date, flag bool)"
    )
    return table


def _fill_pg(pg, table: str) -> None:
    with pg.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s)", ROWS)


def _read(directory: Path) -> pa.Table:
    parts = visible_parts(directory)
    assert parts, f"no parts in {directory}"
    if parts[0].suffix == ".csv":
        return pa.concat_tables(pacsv.read_csv(p) for p in parts)
    return pa.concat_tables(pq.read_table(p) for p in parts)


def _hashes_by_id(table: pa.Table) -> dict[int, int]:
    return dict(zip(table["id"].to_pylist(), table["_rivet_row_hash"].to_pylist(), strict=True))


@pytest.mark.postgres
def test_meta_columns_hold_the_run_time_and_the_documented_row_hash(pg, pg_table, tmp_path):
    table = _pg_source(pg_table)
    _fill_pg(pg, table)
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    result = rivet.export(
        pg_url(),
        query=f"SELECT * FROM {table} ORDER BY id",
        destination=str(tmp_path / "o"),
        meta_columns={"exported_at": True, "row_hash": True},
    )
    after = dt.datetime.now(dt.timezone.utc)
    written = _read(tmp_path / "o")
    assert written.column_names[-2:] == ["_rivet_exported_at", "_rivet_row_hash"]
    assert written.schema.field("_rivet_exported_at").type == pa.timestamp("us", tz="UTC")
    assert result.schema.names[-2:] == ["_rivet_exported_at", "_rivet_row_hash"]
    stamps = set(written["_rivet_exported_at"].to_pylist())
    assert len(stamps) == 1 and before <= stamps.pop() <= after
    assert written["_rivet_row_hash"].to_pylist() == [expected_hash(r) for r in ROWS]
    # The source columns are untouched.
    assert written.drop_columns(["_rivet_exported_at", "_rivet_row_hash"]).to_pylist()[0]["name"] == "alpha"


@pytest.mark.postgres
def test_a_row_hashes_alike_across_runs_modes_readers_and_formats(pg, pg_table, tmp_path):
    table = _pg_source(pg_table)
    _fill_pg(pg, table)
    meta = {"row_hash": True}
    runs = {
        "full": dict(query=f"SELECT * FROM {table}"),
        "again": dict(query=f"SELECT * FROM {table}"),
        "chunked": dict(table=table, mode="chunked", chunk_size=1, parallel=2),
        "csv": dict(query=f"SELECT * FROM {table}", format="csv"),
    }
    seen = {}
    for name, options in runs.items():
        rivet.export(pg_url(), destination=str(tmp_path / name), meta_columns=meta, **options)
        seen[name] = _hashes_by_id(_read(tmp_path / name))
    # connectorx reads PostgreSQL chunks (bounded statements) only.
    source = {"type": "postgres", "url": pg_url(), "engine": "connectorx"}
    result = rivet.export(
        source, table=table, mode="chunked", chunk_size=2, destination=str(tmp_path / "cx"), meta_columns=meta
    )
    assert result.engine == "connectorx"
    seen["connectorx"] = _hashes_by_id(_read(tmp_path / "cx"))
    want = {r[0]: expected_hash(r) for r in ROWS}
    for name, hashes in seen.items():
        assert hashes == want, name


@pytest.mark.postgres
def test_a_chunked_run_stamps_every_part_with_one_time(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 3000) g")
    pg.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    rivet.export(
        pg_url(),
        table=table,
        mode="chunked",
        chunk_size=300,
        parallel=2,
        max_file_size="16KB",
        destination=str(tmp_path / "o"),
        meta_columns={"exported_at": True},
    )
    assert len(visible_parts(tmp_path / "o")) > 1
    written = _read(tmp_path / "o")
    assert written.num_rows == 3000
    assert len(set(written["_rivet_exported_at"].to_pylist())) == 1


@pytest.mark.mysql
def test_the_same_rows_hash_alike_on_mariadb_and_postgresql(pg, pg_table, my_table, my_conn, tmp_path):
    pg_name = _pg_source(pg_table)
    _fill_pg(pg, pg_name)
    my_name = my_table(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount decimal(12,2), at datetime(6), day date, flag bool)"
    )
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {my_name} VALUES (%s, %s, %s, %s, %s, %s)", ROWS)
    meta = {"row_hash": True}
    # MariaDB's bool is a tinyint(1), a number: the other columns mean the same on both servers.
    columns = "id, name, amount, at, day"
    rivet.export(
        pg_url(), query=f"SELECT {columns} FROM {pg_name}", destination=str(tmp_path / "pg"), meta_columns=meta
    )
    rivet.export(
        MYSQL_URL, query=f"SELECT {columns} FROM {my_name}", destination=str(tmp_path / "my"), meta_columns=meta
    )
    assert _hashes_by_id(_read(tmp_path / "my")) == _hashes_by_id(_read(tmp_path / "pg"))


@pytest.mark.postgres
def test_a_query_column_named_like_a_meta_column_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="already has a column named _rivet_row_hash"):
        rivet.export(
            pg_url(),
            query="SELECT 1 AS _rivet_row_hash",
            destination=str(tmp_path / "o"),
            meta_columns={"row_hash": True},
        )
    assert visible_parts(tmp_path / "o") == []


def test_meta_columns_the_original_had_later_are_refused_with_what_to_use(tmp_path):
    with pytest.raises(ConfigError, match=r"meta_columns\.run_id is not supported: each part's run id"):
        rivet.export("sqlite:///x.db", query="SELECT 1", destination=str(tmp_path), meta_columns={"run_id": True})
