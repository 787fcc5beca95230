"""``parquet: {uuid: native, json: native}``: uuid and json columns in Parquet's own types, read
back by pyarrow, DuckDB and polars with the source's values; text without the option."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import my_source, pg_source
from tests.outputs import run_rivet, write_config

UUIDS = ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None, "00000000-0000-0000-0000-000000000000"]
DOCS = ['{"a": 1, "b": [true, null]}', '{"ü": "ß"}', None]


def export(home: Path, source: dict[str, str], table: str, parquet: dict[str, str] | None) -> Path:
    """Export ``table`` whole with the ``parquet:`` block given; its one part."""
    entry: dict[str, Any] = {"name": "typed", "table": table, "destination": str(home / "out")}
    if parquet is not None:
        entry["parquet"] = parquet
    done = run_rivet("run", "-c", str(write_config(home, source, [entry])))
    assert done.returncode == 0, done.stderr
    (part,) = (home / "out").glob("*.parquet")
    return part


@pytest.fixture
def pg_typed(pg, pg_table) -> str:
    name = pg_table("CREATE TABLE {t} (id INT PRIMARY KEY, u UUID, j JSON, jb JSONB)")
    for i, (u, doc) in enumerate(zip(UUIDS, DOCS, strict=True)):
        pg.execute(f"INSERT INTO {name} VALUES (%s, %s, %s, %s)", (i, u, doc, doc))  # type: ignore[arg-type]
    return f"public.{name}"


def test_uuid_and_json_are_written_in_parquets_own_types(pg_typed, tmp_path):
    part = export(tmp_path, pg_source(), pg_typed, {"uuid": "native", "json": "native"})
    schema = pq.ParquetFile(part).schema
    assert "UUID" in str(schema.column(1).logical_type) and schema.column(1).physical_type == "FIXED_LEN_BYTE_ARRAY"
    assert "JSON" in str(schema.column(2).logical_type) and "JSON" in str(schema.column(3).logical_type)
    # pyarrow: the extension types, the UUID's 16 bytes, the JSON's text.
    table = pq.read_table(part).sort_by("id")
    assert table.schema.field("u").type == pa.uuid() and table.schema.field("j").type == pa.json_(pa.string())
    expected = [uuid.UUID(u).bytes if u else None for u in UUIDS]
    assert [v.as_py() for v in table.column("u")] == [uuid.UUID(u) if u else None for u in UUIDS]
    assert [json.loads(v) if v else None for v in table.column("j").to_pylist()] == [
        json.loads(d) if d else None for d in DOCS
    ]
    # DuckDB types them on read.
    rows = duckdb.sql(
        f"SELECT typeof(u), u::VARCHAR, typeof(j), j->>'a' FROM read_parquet('{part}') ORDER BY id"
    ).fetchall()
    assert [r[1] for r in rows] == UUIDS
    assert {r[0] for r in rows} == {"UUID"} and {r[2] for r in rows} == {"JSON"}
    assert rows[0][3] == "1"
    # polars reads the UUID's bytes and the JSON's text.
    frame = pl.read_parquet(part).sort("id")
    assert frame["u"].to_list() == expected
    assert frame["jb"].to_list()[1] is not None and json.loads(frame["jb"].to_list()[1]) == {"ü": "ß"}


def test_without_the_option_uuid_and_json_stay_text(pg_typed, tmp_path):
    part = export(tmp_path, pg_source(), pg_typed, None)
    table = pq.read_table(part).sort_by("id")
    assert table.schema.field("u").type == pa.string() and table.schema.field("j").type == pa.string()
    assert table.column("u").to_pylist() == UUIDS


def test_mariadbs_json_and_uuid_are_written_in_parquets_own_types(my_table, tmp_path):
    # MariaDB's JSON is a LONGTEXT and its UUID a CHAR(36) to the protocol: its extended type info says which.
    name = my_table(
        "CREATE TABLE {t} (id INT PRIMARY KEY, j JSON, u UUID);\n"
        f"""INSERT INTO {{t}} VALUES (0, '{{{{"a": 1}}}}', '{UUIDS[0]}'), (1, NULL, NULL)"""
    )
    part = export(tmp_path, my_source(), f"test.{name}", {"json": "native", "uuid": "native"})
    table = pq.read_table(part).sort_by("id")
    assert table.schema.field("j").type == pa.json_(pa.string()) and table.schema.field("u").type == pa.uuid()
    assert [json.loads(v) if v else None for v in table.column("j").to_pylist()] == [{"a": 1}, None]
    assert [v.as_py() for v in table.column("u")] == [uuid.UUID(UUIDS[0]), None]
    rows = duckdb.sql(f"SELECT typeof(j), typeof(u), u::VARCHAR FROM read_parquet('{part}') ORDER BY id").fetchall()
    assert rows == [("JSON", "UUID", UUIDS[0]), ("JSON", "UUID", None)]


def test_native_types_apply_to_parquet_files_only(tmp_path):
    config = write_config(
        tmp_path,
        pg_source(),
        [{"name": "t", "table": "public.t", "format": "delta", "parquet": {"uuid": "native"}, "destination": "out"}],
    )
    refused = run_rivet("validate", "-c", str(config))
    assert refused.returncode == 2 and "parquet: {uuid: native} applies to format: parquet" in refused.stderr
