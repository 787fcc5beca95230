"""Keys of the original tool's later versions: what rivet implements (``meta_columns.row_hash: [cols]``,
``tuning.max_value_mb``, ``rivet validate --depth``) read back from the files; the rest refused with what to use."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.outputs import run_rivet, write_config


def shop(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "shop.db") as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, note TEXT)")
        db.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"item {i}", f"note {i % 2}") for i in range(6)])
        db.execute("INSERT INTO items VALUES (99, 'big', ?)", ("x" * (2 * 1024 * 1024),))
    return {"type": "sqlite", "path": str(home / "shop.db")}


def rows(folder: Path) -> list[dict[str, Any]]:
    return sorted((r for p in folder.glob("*.parquet") for r in pq.read_table(p).to_pylist()), key=lambda r: r["id"])


def test_a_row_hash_of_listed_columns_is_the_hash_of_just_those(tmp_path):
    source = shop(tmp_path)
    exports = [
        {"name": "listed", "table": "items", "meta_columns": {"row_hash": ["id", "name"]}, "destination": "listed"},
        {"name": "only", "query": "SELECT id, name FROM items", "meta_columns": {"row_hash": True},
         "destination": "only"},
        {"name": "whole", "table": "items", "meta_columns": {"row_hash": True}, "destination": "whole"},
    ]  # fmt: skip
    done = run_rivet("run", "-c", str(write_config(tmp_path, source, exports)))
    assert done.returncode == 0, done.stderr
    listed, only, whole = (rows(tmp_path / name) for name in ("listed", "only", "whole"))
    assert [r["note"] for r in listed] == [r["note"] for r in whole]  # every column is written
    assert [r["_rivet_row_hash"] for r in listed] == [r["_rivet_row_hash"] for r in only]
    assert [r["_rivet_row_hash"] for r in listed] != [r["_rivet_row_hash"] for r in whole]


def test_a_row_hash_of_a_column_the_query_lacks_is_refused_by_name(tmp_path):
    export = {"name": "a", "table": "items", "meta_columns": {"row_hash": ["id", "nope"]}, "destination": "out"}
    refused = run_rivet("run", "-c", str(write_config(tmp_path, shop(tmp_path), [export])))
    assert refused.returncode == 2 and "meta_columns.row_hash names nope" in refused.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.parquet"))


@pytest.mark.parametrize(("limit", "code"), [(1, 3), (3, 0), (0, 0)])
def test_a_value_above_max_value_mb_fails_the_export_naming_its_column(tmp_path, limit, code):
    export = {"name": "a", "table": "items", "tuning": {"max_value_mb": limit}, "destination": "out"}
    done = run_rivet("run", "-c", str(write_config(tmp_path, shop(tmp_path), [export])))
    assert done.returncode == code, done.stderr
    if code:
        assert "column 'note' holds a single value of 2.0 MiB, above tuning.max_value_mb (1)" in done.stderr
        assert not list((tmp_path / "out").glob("*.parquet"))
    else:
        assert [r["id"] for r in rows(tmp_path / "out")][-1] == 99


def test_validate_light_checks_sizes_and_full_reads_the_parts(tmp_path):
    export = {"name": "a", "table": "items", "destination": "out"}
    config = write_config(tmp_path, shop(tmp_path), [export])
    assert run_rivet("run", "-c", str(config)).returncode == 0
    (part,) = (tmp_path / "out").glob("*.parquet")
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    part.write_bytes(bytes(data))
    light = run_rivet("validate", "-c", str(config), "--depth", "light", "--json")
    full = run_rivet("validate", "-c", str(config), "--json")
    assert light.returncode == 0, light.stdout
    assert full.returncode == 3 and "SHA-256" in json.dumps(json.loads(full.stdout))
    part.unlink()
    gone = run_rivet("validate", "-c", str(config), "--depth", "light")
    assert gone.returncode == 3 and "is missing" in gone.stdout + gone.stderr
