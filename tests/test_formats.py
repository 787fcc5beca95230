"""Output options: compression codecs and levels, file rotation, empty results, part naming."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import rivet
from tests.conftest import pg_url

pytestmark = pytest.mark.postgres

QUERY = "SELECT i AS id, md5(i::text) AS h, (i % 7)::smallint AS k FROM generate_series(1, 20000) AS i"


@pytest.mark.parametrize(
    ("options", "codec"),
    [
        ({}, "ZSTD"),
        ({"compression": "snappy"}, "SNAPPY"),
        ({"compression": "gzip", "compression_level": 9}, "GZIP"),
        ({"compression": "lz4"}, "LZ4"),
        ({"compression": "none"}, "UNCOMPRESSED"),
        ({"compression_profile": "compact"}, "ZSTD"),
    ],
)
def test_parquet_codecs(tmp_path, options, codec):
    result = rivet.export(pg_url(), query=QUERY, destination=str(tmp_path), name="n", **options)
    meta = pq.ParquetFile(result.files[0]).metadata
    assert meta.row_group(0).column(0).compression == codec
    assert pq.read_table(result.files[0]).num_rows == 20000


def test_csv_gzip(tmp_path):
    result = rivet.export(pg_url(), query=QUERY, destination=str(tmp_path), name="n", format="csv", compression="gzip")
    assert result.files[0].endswith(".csv.gz")
    with gzip.open(result.files[0], "rt") as f:
        assert f.readline().strip() == '"id","h","k"'
    assert pacsv.read_csv(result.files[0]).num_rows == 20000


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_rotation_keeps_parts_near_the_limit_and_loses_nothing(tmp_path, fmt):
    limit = 128 * 1024
    result = rivet.export(
        pg_url(),
        query=QUERY,
        destination=str(tmp_path),
        name="n",
        format=fmt,
        max_file_size=limit,
        tuning={"batch_size": 1000},
    )
    assert len(result.files) > 2
    names = [f.rsplit("/", 1)[1] for f in result.files]
    assert all(re.fullmatch(rf"n_\d{{8}}_\d{{6}}_\d{{3}}_part{i}\.{fmt}", name) for i, name in enumerate(names)), names
    ids = []
    for path in result.files:
        table = pq.read_table(path) if fmt == "parquet" else pacsv.read_csv(path)
        ids += table.column("id").to_pylist()
    assert sorted(ids) == list(range(1, 20001))
    sizes = [p.bytes for p in result.parts]
    # Parts are cut at batch (CSV) or row-group (Parquet) boundaries: near the limit, never far past it.
    assert max(sizes) <= limit * 1.5, sizes
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["part_count"] == len(sizes) and manifest["row_count"] == 20000


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_empty_result_writes_one_part_with_the_schema(tmp_path, fmt):
    result = rivet.export(
        pg_url(), query="SELECT 1::int AS a, 'x'::text AS b WHERE false", destination=str(tmp_path), format=fmt
    )
    assert result.rows == 0 and len(result.files) == 1
    if fmt == "parquet":
        table = pq.read_table(result.files[0])
        assert table.num_rows == 0 and table.schema.names == ["a", "b"]
    else:
        assert Path(result.files[0]).read_text() == '"a","b"\n'
    assert (tmp_path / "_SUCCESS").exists()


def test_manifest_lists_parts_with_checksums(tmp_path):
    import hashlib

    result = rivet.export(pg_url(), query=QUERY, destination=str(tmp_path), name="n")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["run_id"] == result.run_id and manifest["export"] == "n"
    part = manifest["parts"][0]
    data = Path(result.files[0]).read_bytes()
    assert part["sha256"] == hashlib.sha256(data).hexdigest() and part["bytes"] == len(data)
    assert [f["name"] for f in manifest["schema"]] == ["id", "h", "k"]
    assert manifest["schema"][0]["rivet.source_type"] == "integer"
    assert "password" not in json.dumps(manifest)
