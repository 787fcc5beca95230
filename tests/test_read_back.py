"""Every destination and format gives back every column of every row as the source has it.

One query with what trips writers up (NULL beside '', quotes, commas, newlines, non-ASCII text,
decimals, zoned timestamps, bytes, booleans, doubles) is written to each destination in each
format, read back from storage by that format's own reader (pyarrow, deltalake, pyiceberg), and
compared with psycopg's reading of the same query. Files are found by listing the destination,
not by trusting the result's list.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import rivet
from tests.conftest import pg_url, s3_destination
from tests.typecheck import parse_csv_value, utc, wrong_columns

pytestmark = pytest.mark.postgres

ROWS = 3000
QUERY = f"""SELECT i AS id,
    CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE 'v' || i || E',"q"\\n\\tü ' || repeat('x', i % 40) END AS txt,
    (CASE WHEN i % 7 = 0 THEN NULL ELSE i * 1.25 - 500 END)::numeric(12,3) AS amount,
    CASE WHEN i % 3 = 0 THEN NULL
         ELSE timestamptz '2024-03-10 01:00:00+00' + i * interval '1 minute 1.5 second' END AS at,
    date '1999-12-31' + i AS day,
    CASE WHEN i % 11 = 0 THEN NULL ELSE i % 2 = 0 END AS flag,
    CASE WHEN i % 4 = 0 THEN NULL WHEN i % 4 = 1 THEN ''::bytea ELSE decode(md5(i::text), 'hex') END AS raw,
    CASE WHEN i % 13 = 0 THEN NULL ELSE i / 3.0::float8 END AS ratio
    FROM generate_series(1, {ROWS}) AS i"""
TYPES = {
    "id": pa.int32(),
    "txt": pa.string(),
    "amount": pa.decimal128(12, 3),
    "at": pa.timestamp("us", tz="UTC"),
    "day": pa.date32(),
    "flag": pa.bool_(),
    "raw": pa.binary(),
    "ratio": pa.float64(),
}


@pytest.fixture(scope="module")
def expected(pg_conn) -> dict[str, list[Any]]:
    rows = pg_conn.execute(f"SELECT * FROM ({QUERY}) AS q ORDER BY id").fetchall()
    return {name: [utc(r[j]) for r in rows] for j, name in enumerate(TYPES)}


def _files(fs: fsspec.AbstractFileSystem, root: str, suffix: str) -> list[str]:
    """The data files under ``root``, from a listing of storage; the manifest must name the same."""
    found = sorted(p for p in fs.find(root) if p.endswith(suffix))
    manifest = json.loads(fs.cat(f"{root}/manifest.json"))
    assert sorted(f"{root}/{part['name']}" for part in manifest["parts"]) == found
    assert manifest["row_count"] == ROWS
    assert fs.exists(f"{root}/_SUCCESS")
    return found


def _parquet(fs: fsspec.AbstractFileSystem, root: str) -> pa.Table:
    tables = []
    for path in _files(fs, root, ".parquet"):
        with fs.open(path) as f:
            tables.append(pq.read_table(f))
    return pa.concat_tables(tables)


CSV_SUFFIX = {"none": ".csv", "gzip": ".csv.gz", "zstd": ".csv.zst"}


def _csv(fs: fsspec.AbstractFileSystem, root: str, compression: str = "none") -> pa.Table:
    """Every CSV part as text, each field parsed as the README says its type is written."""
    tables = []
    for path in _files(fs, root, CSV_SUFFIX[compression]):
        stream = pa.input_stream(
            pa.BufferReader(fs.cat(path)), compression=None if compression == "none" else compression
        )
        texts = pacsv.read_csv(
            stream,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(TYPES, pa.string()),
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        assert texts.column_names == list(TYPES)
        columns = {n: [parse_csv_value(t, TYPES[n]) for t in texts.column(n).to_pylist()] for n in TYPES}
        tables.append(pa.table({n: pa.array(v, TYPES[n]) for n, v in columns.items()}))
    return pa.concat_tables(tables)


def assert_same_as_source(table: pa.Table, expected: dict[str, list[Any]]) -> None:
    """``table`` holds exactly the source's rows and values, each column with its type."""
    assert table.column_names[: len(TYPES)] == list(TYPES)
    table = table.sort_by("id")
    assert table.num_rows == ROWS
    wrong = wrong_columns(table, TYPES, expected)
    assert not wrong, wrong


def _export(destination: Any, **options: Any) -> rivet.ExportResult:
    """``QUERY`` exported in parts: batches of 500 rows, parts cut near 48 KB."""
    tuning = {"batch_size": 500}
    return rivet.export(
        pg_url(), query=QUERY, destination=destination, name="back", max_file_size="48KB", tuning=tuning, **options
    )


# Local files: each Parquet codec, each CSV codec, single stream and chunked with two workers.
@pytest.mark.parametrize("compression", ["zstd", "snappy", "gzip", "lz4", "none"])
def test_parquet_on_local_disk(tmp_path, expected, compression):
    _export(str(tmp_path / "out"), compression=compression)
    assert_same_as_source(_parquet(fsspec.filesystem("file"), str(tmp_path / "out")), expected)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("shape", ["stream", "chunked"])
def test_csv_on_local_disk(tmp_path, expected, compression, shape):
    chunked = {"mode": "chunked", "chunk_column": "id", "chunk_size": 400, "parallel": 2} if shape == "chunked" else {}
    result = _export(str(tmp_path / "out"), format="csv", compression=compression, **chunked)
    assert len(result.files) > 1
    assert_same_as_source(_csv(fsspec.filesystem("file"), str(tmp_path / "out"), compression), expected)


def test_parquet_chunked_with_two_workers(tmp_path, expected):
    _export(str(tmp_path / "out"), mode="chunked", chunk_column="id", chunk_size=400, parallel=2)
    assert_same_as_source(_parquet(fsspec.filesystem("file"), str(tmp_path / "out")), expected)


def test_memory_destination(expected):
    root = f"rivet-read-back/{os.urandom(4).hex()}"
    _export(f"memory://{root}/p")
    _export(f"memory://{root}/c", format="csv", compression="gzip")
    fs = fsspec.filesystem("memory")
    assert_same_as_source(_parquet(fs, f"/{root}/p"), expected)
    assert_same_as_source(_csv(fs, f"/{root}/c", "gzip"), expected)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_s3(s3_bucket, s3_endpoint, expected, fmt):
    _export(s3_destination(s3_bucket, s3_endpoint, "out"), format=fmt)
    fs = fsspec.filesystem("s3", key="testing", secret="testing", endpoint_url=s3_endpoint, skip_instance_cache=True)
    read = _parquet if fmt == "parquet" else _csv
    assert_same_as_source(read(fs, f"{s3_bucket}/out"), expected)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_gcs(gcs, expected, fmt):
    prefix = f"out/{os.urandom(4).hex()}"
    _export({**gcs, "prefix": prefix}, format=fmt)
    fs = fsspec.filesystem("gs", token="anon", endpoint_url=gcs["endpoint"], skip_instance_cache=True)
    read = _parquet if fmt == "parquet" else _csv
    assert_same_as_source(read(fs, f"{gcs['bucket']}/{prefix}"), expected)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_azure(azure, expected, fmt):
    prefix = f"out/{os.urandom(4).hex()}"
    _export({**azure, "prefix": prefix}, format=fmt)
    fs = fsspec.filesystem("abfs", **azure["storage_options"], skip_instance_cache=True)
    read = _parquet if fmt == "parquet" else _csv
    assert_same_as_source(read(fs, f"{azure['container']}/{prefix}"), expected)


def test_delta_table(tmp_path, expected):
    import deltalake

    _export(str(tmp_path / "out"), format="delta")
    assert_same_as_source(deltalake.DeltaTable(str(tmp_path / "out")).to_pyarrow_table(), expected)


def test_iceberg_table(tmp_path, expected):
    from pyiceberg import catalog

    catalog_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    _export(str(tmp_path / "out"), format="iceberg", iceberg={"catalog_url": catalog_url})
    table = catalog.load_catalog("rivet", type="sql", uri=catalog_url).load_table(("rivet", "back"))
    assert_same_as_source(table.scan().to_arrow(), expected)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_partition_values_empty_and_null_land_in_the_folder_readers_expect(pg, pg_table, tmp_path, fmt):
    """'' and NULL both go to __HIVE_DEFAULT_PARTITION__, / and = are escaped as Hive escapes them
    (a space is not), and the files still hold each row's exact value."""
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, region text)")
    pg.execute(f"INSERT INTO {table} VALUES (1, 'eu'), (2, ''), (3, NULL), (4, 'a/b=c'), (5, 'eu'), (6, ' ')")
    rivet.export(pg_url(), table=table, destination=str(tmp_path / "out"), name="p", partition_by="region", format=fmt)
    folders = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir() and p.name != "_rivet")
    assert folders == [
        "region= ",
        "region=__HIVE_DEFAULT_PARTITION__",
        "region=a%2Fb%3Dc",
        "region=eu",
    ]
    rows = {}
    for folder in folders:
        for part in (tmp_path / "out" / folder).glob(f"*.{fmt}"):
            for row in _read_local(part, fmt).to_pylist():
                rows[row["id"]] = (folder, row["region"])
    assert rows == {
        1: ("region=eu", "eu"),
        2: ("region=__HIVE_DEFAULT_PARTITION__", ""),
        3: ("region=__HIVE_DEFAULT_PARTITION__", None),
        4: ("region=a%2Fb%3Dc", "a/b=c"),
        5: ("region=eu", "eu"),
        6: ("region= ", " "),
    }


def _read_local(path: Path, fmt: str) -> pa.Table:
    if fmt == "parquet":
        return pq.read_table(path)
    options = pacsv.ConvertOptions(
        column_types={"region": pa.string()},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    return pacsv.read_csv(path, convert_options=options)
