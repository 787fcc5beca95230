"""``mode: incremental`` with ``write: merge``: a Delta table that is the source table as it is now
(for the rows the cursor sees), upserted by key each run, never a history of versions."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import pg_url
from tests.outputs import assert_failpoint_ended, run_rivet, write_config

pytestmark = pytest.mark.postgres


def merged(home: Path, fmt: str = "delta") -> list[tuple[Any, ...]]:
    """The merged table's rows, read by its own library."""
    if fmt == "delta":
        from deltalake import DeltaTable

        rows = DeltaTable(str(home / "lake")).to_pyarrow_table().to_pylist()
    else:
        from rivet.output.tables.iceberg import IcebergFormat, IcebergTable
        from rivet.storage.destinations import DestinationSpec

        table = IcebergFormat(IcebergTable.from_config(None, "orders", home))
        rows = table.read(DestinationSpec(str(home / "lake")), None).to_pylist()
    return sorted((r["id"], r["status"], r["amount"]) for r in rows)


def config(home: Path, table: str, **export: Any) -> Path:
    return write_config(
        home,
        {"type": "postgres", "url": pg_url()},
        [{"name": "orders", "table": f"public.{table}", "mode": "incremental", "cursor_column": "updated_at",
          "format": "delta", "write": "merge", "destination": str(home / "lake"), **export}],
    )  # fmt: skip


def live(pg: Any, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in pg.execute(f"SELECT id, status, amount FROM {table} ORDER BY id").fetchall()]


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_an_updated_row_replaces_its_old_version_by_key(pg, pg_table, tmp_path, fmt):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, status text, amount numeric(10,2), updated_at int)")
    pg.execute(f"INSERT INTO {table} SELECT i, 'new', i, 1 FROM generate_series(1, 50) AS i")
    cfg = config(tmp_path, table, format=fmt)
    assert run_rivet("run", "-c", str(cfg)).returncode == 0
    assert merged(tmp_path, fmt) == live(pg, table)
    pg.execute(f"UPDATE {table} SET status = 'paid', amount = amount * 2, updated_at = 2 WHERE id <= 10")
    pg.execute(f"INSERT INTO {table} VALUES (51, 'new', 51, 2)")
    done = run_rivet("run", "-c", str(cfg), "--json")
    assert done.returncode == 0, done.stderr
    assert merged(tmp_path, fmt) == live(pg, table)  # 51 rows, not 61 versions
    # Nothing new: the table as it was.
    assert run_rivet("run", "-c", str(cfg)).returncode == 0
    assert merged(tmp_path, fmt) == live(pg, table)


def test_a_run_killed_after_its_upsert_leaves_one_version_of_each_row(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, status text, amount numeric(10,2), updated_at int)")
    pg.execute(f"INSERT INTO {table} SELECT i, 'new', i, 1 FROM generate_series(1, 20) AS i")
    cfg = config(tmp_path, table)
    assert run_rivet("run", "-c", str(cfg)).returncode == 0
    pg.execute(f"UPDATE {table} SET status = 'paid', updated_at = 2 WHERE id <= 5")
    killed = run_rivet("run", "-c", str(cfg), env={"RIVET_FAILPOINTS": "before_cursor:crash"})
    assert_failpoint_ended(killed, "before_cursor", -signal.SIGKILL)
    pg.execute(f"UPDATE {table} SET amount = 0, updated_at = 3 WHERE id = 20")
    assert run_rivet("run", "-c", str(cfg)).returncode == 0
    assert merged(tmp_path) == live(pg, table)


def test_a_query_merges_by_the_keys_it_names(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, status text, amount numeric(10,2), updated_at int)")
    pg.execute(f"INSERT INTO {table} SELECT i, 'new', i, 1 FROM generate_series(1, 5) AS i")
    export = {"name": "orders", "query": f"SELECT * FROM {table}", "mode": "incremental", "cursor_column": "updated_at",
              "format": "delta", "write": "merge", "destination": str(tmp_path / "lake")}  # fmt: skip
    refused = run_rivet("run", "-c", str(write_config(tmp_path, {"type": "postgres", "url": pg_url()}, [export])))
    assert refused.returncode == 2 and "write: merge of a query needs merge_keys" in refused.stderr
    cfg = write_config(tmp_path, {"type": "postgres", "url": pg_url()}, [{**export, "merge_keys": ["id"]}])
    assert run_rivet("run", "-c", str(cfg)).returncode == 0
    pg.execute(f"UPDATE {table} SET status = 'paid', updated_at = 2 WHERE id = 3")
    assert run_rivet("run", "-c", str(cfg)).returncode == 0
    assert merged(tmp_path) == live(pg, table)
