"""Nothing from the state store is trusted with paths or SQL: a forged row is refused, nothing outside is touched."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import pg_url
from tests.outputs import assert_failpoint_ended, run_rivet

pytestmark = pytest.mark.postgres


def _killed_run(pg, pg_table, tmp_path: Path) -> tuple[Path, str]:
    """A checkpointed chunked run killed after its third part: some chunks done, some pending."""
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, h text)")
    pg.execute(f"INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series(1, 3000) i")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n'
        f"  - {{name: c, table: {table}, mode: chunked, chunk_column: id, chunk_size: 500, chunk_checkpoint: true, "
        "max_file_size: 1KB, destination: out}\n"
    )
    killed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": "after_part_write@3:crash"})
    assert_failpoint_ended(killed, "after_part_write@3:crash", -9)
    return config, table


def _edit(config: Path, sql: str, *args: object) -> None:
    with contextlib.closing(sqlite3.connect(config.parent / ".rivet_state.db")) as conn, conn:
        assert conn.execute(sql, args).rowcount > 0


def _resume(config: Path):  # type: ignore[no-untyped-def]
    return run_rivet("run", "-c", str(config), "--resume")


def test_a_forged_destination_is_refused_and_nothing_is_written_there(pg, pg_table, tmp_path):
    config, _ = _killed_run(pg, pg_table, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    _edit(config, "UPDATE chunk_runs SET destination = ?", str(elsewhere))
    refused = _resume(config)
    assert refused.returncode != 0 and "is not this export's destination" in refused.stderr, refused.stderr
    assert f"rivet state reset-chunks -c {config} -e c" in refused.stderr
    assert not elsewhere.exists()


def test_a_forged_part_name_never_reaches_outside_the_destination(pg, pg_table, tmp_path):
    config, _ = _killed_run(pg, pg_table, tmp_path)
    victim = tmp_path / "victim.parquet"
    victim.write_bytes(b"not rivet's")
    with contextlib.closing(sqlite3.connect(config.parent / ".rivet_state.db")) as conn:
        index, parts = conn.execute("SELECT chunk_index, parts FROM chunk_tasks WHERE status = 'done'").fetchone()
    forged = [{**p, "name": "../victim.parquet"} for p in json.loads(parts)]
    _edit(config, "UPDATE chunk_tasks SET parts = ? WHERE chunk_index = ?", json.dumps(forged), index)
    refused = _resume(config)
    assert refused.returncode != 0 and "'../victim.parquet' is not the name of a file inside" in refused.stderr
    assert victim.read_bytes() == b"not rivet's"


def test_stored_chunk_sql_is_never_run(pg, pg_table, tmp_path):
    config, _ = _killed_run(pg, pg_table, tmp_path)
    secret = pg_table("CREATE TABLE {t} AS SELECT 'the payroll' AS id, 'x' AS h")
    _edit(config, "UPDATE chunk_tasks SET query = ? WHERE status <> 'done'", f"SELECT * FROM {secret}")
    refused = _resume(config)
    assert refused.returncode != 0 and "holds other SQL in the state store than its bounds make" in refused.stderr
    assert "the payroll" not in refused.stderr
    assert not any(b"payroll" in p.read_bytes() for p in (tmp_path / "out").glob("*.parquet"))


def test_forged_bounds_and_part_names_are_refused(pg, pg_table, tmp_path):
    config, _ = _killed_run(pg, pg_table, tmp_path)
    _edit(config, "UPDATE chunk_tasks SET bounds = ? WHERE chunk_index = 1", json.dumps(["keys", "h", None, 5]))
    refused = _resume(config)
    assert refused.returncode != 0 and "are not key bounds of this export (its key is id)" in refused.stderr
    _edit(config, "UPDATE chunk_tasks SET bounds = ? WHERE chunk_index = 1", json.dumps(["keys", "id", 500, 1000]))
    _edit(config, "UPDATE chunk_runs SET part_stem = '../../c_20260101_000000_000'")
    refused = _resume(config)
    assert refused.returncode != 0 and "which is not a name this export gives" in refused.stderr


def test_forged_bounds_that_overlap_or_leave_a_gap_are_refused(pg, pg_table, tmp_path):
    # Chunk 2 made a copy of chunk 1, bounds and SQL alike: each is SQL its bounds make, but chunk 1's
    # rows would be read twice and chunk 2's never.
    config, _ = _killed_run(pg, pg_table, tmp_path)
    with contextlib.closing(sqlite3.connect(config.parent / ".rivet_state.db")) as conn:
        query, bounds = conn.execute("SELECT query, bounds FROM chunk_tasks WHERE chunk_index = 1").fetchone()
    _edit(config, "UPDATE chunk_tasks SET query = ?, bounds = ?, status = 'pending' WHERE chunk_index = 2",
          query, bounds)  # fmt: skip
    refused = _resume(config)
    assert refused.returncode != 0 and "range 1 ends at" in refused.stderr, refused.stderr
    assert "rivet state reset-chunks" in refused.stderr


def test_an_untouched_checkpoint_still_resumes_exactly(pg, pg_table, tmp_path):
    config, table = _killed_run(pg, pg_table, tmp_path)
    resumed = _resume(config)
    assert resumed.returncode == 0, resumed.stderr
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    ids = sorted(i for p in manifest["parts"] for i in pq.read_table(out / p["name"]).column("id").to_pylist())
    assert ids == [r[0] for r in pg.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


def test_validate_refuses_a_forged_published_folder(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n  - {{name: v, table: {table}, destination: out}}\n'
    )
    assert run_rivet("run", "-c", str(config)).returncode == 0
    _edit(config, "UPDATE export_runs SET destination = ?", str(tmp_path / "elsewhere"))
    refused = run_rivet("validate", "-c", str(config))
    assert refused.returncode != 0 and "the store is not trusted with paths" in refused.stderr


def test_repair_never_reads_a_forged_destination_even_to_plan(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 2000) AS i")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n'
        f"  - {{name: c, table: {table}, mode: chunked, chunk_column: id, chunk_size: 500, chunk_checkpoint: true, "
        "destination: out}\n"
    )
    assert run_rivet("run", "-c", str(config)).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    _edit(config, "UPDATE chunk_runs SET destination = ?", str(elsewhere))
    # The dry run (no --execute) only plans, and still never opens the folder the store names.
    for args in ((), ("--execute",)):
        refused = run_rivet("repair", "-c", str(config), "-e", "c", *args)
        assert refused.returncode != 0 and "the store is not trusted with paths" in refused.stderr, refused.stderr
    assert not elsewhere.exists()
