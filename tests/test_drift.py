"""on_schema_drift and shape drift: the output compared with what the export last published."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import rivet
from rivet.errors import SchemaDriftError
from tests.conftest import my_source, pg_source, pg_url, visible_parts
from tests.outputs import files_with_bytes, run_rivet, write_config


def _run(config: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = run_rivet("run", "-c", str(config), "--json")
    return proc, json.loads(proc.stdout)["exports"][0]


@pytest.mark.postgres
def test_drift_warns_by_default_and_fail_publishes_nothing(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, amount numeric(10,2))")
    pg.execute(f"INSERT INTO {table} VALUES (1, 1.50)")

    def config(policy: str) -> Path:
        return write_config(
            tmp_path,
            pg_source(),
            f"- {{name: t, query: 'SELECT * FROM {table}', destination: out, on_schema_drift: {policy}}}\n",
        )

    first, export = _run(config("warn"))
    assert first.returncode == 0 and export["schema_drift"] is None
    pg.execute(f"ALTER TABLE {table} ADD COLUMN note text")
    warned, export = _run(config("warn"))
    assert warned.returncode == 0, warned.stderr
    assert export["schema_drift"] == {"added": ["note: string"], "removed": [], "retyped": []}
    assert "export t: schema drift: 1 added (note: string)" in warned.stderr
    _, export = _run(config("warn"))
    assert export["schema_drift"] is None, "the new schema was not remembered"

    before = files_with_bytes(tmp_path / "out")
    pg.execute(f"ALTER TABLE {table} ALTER COLUMN amount TYPE float8")
    failed, export = _run(config("fail"))
    assert failed.returncode == 4, failed.stderr
    assert "nothing published: 1 retyped (amount: decimal128(10, 2) -> double)" in export["error"]
    assert files_with_bytes(tmp_path / "out") == before
    # continue accepts it without a warning; after that the new schema is the reference.
    accepted, export = _run(config("continue"))
    assert accepted.returncode == 0 and export["schema_drift"]["retyped"]
    assert "export t: schema drift" not in accepted.stderr and "; schema drift: 1 retyped" in accepted.stderr
    settled, _ = _run(config("fail"))
    assert settled.returncode == 0, settled.stderr


@pytest.mark.mysql
def test_a_chunked_run_that_drifts_with_fail_reads_nothing_and_leaves_no_run_to_resume(my_table, my_conn, tmp_path):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY, a int, b varchar(10))")
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", [(i, i, "x") for i in range(1, 101)])
    config = write_config(
        tmp_path,
        my_source(),
        f"""\
        - name: c
          table: {table}
          mode: chunked
          chunk_size: 20
          parallel: 2
          chunk_checkpoint: true
          on_schema_drift: fail
          destination: out
        """,
    )
    first, _ = _run(config)
    assert first.returncode == 0, first.stderr
    before = files_with_bytes(tmp_path / "out")
    with my_conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {table} DROP COLUMN b")
    failed, export = _run(config)
    assert failed.returncode == 4 and "1 removed (b: string)" in export["error"]
    assert files_with_bytes(tmp_path / "out") == before
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        statuses = [s for (s,) in conn.execute("SELECT status FROM chunk_runs ORDER BY started_at")]
    assert statuses == ["completed", "failed"]


@pytest.mark.postgres
def test_without_a_state_store_the_destination_manifest_is_the_reference(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    out = str(tmp_path / "out")
    rivet.export(pg_url(), query=f"SELECT * FROM {table}", destination=out)
    with pytest.raises(SchemaDriftError, match=r"1 added \(extra: int32\)"):
        rivet.export(pg_url(), query=f"SELECT *, 2 AS extra FROM {table}", destination=out, on_schema_drift="fail")
    assert pq.read_table(visible_parts(tmp_path / "out")[0]).column_names == ["id"]


@pytest.mark.postgres
def test_meta_columns_are_not_drift(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    out = str(tmp_path / "out")
    rivet.export(pg_url(), query=f"SELECT * FROM {table}", destination=out, state_dir=str(tmp_path))
    result = rivet.export(
        pg_url(),
        query=f"SELECT * FROM {table}",
        destination=out,
        state_dir=str(tmp_path),
        on_schema_drift="fail",
        meta_columns={"row_hash": True},
    )
    assert result.status == "success" and result.schema_drift is None


@pytest.mark.postgres
def test_a_value_much_wider_than_any_published_before_is_a_shape_warning(pg, pg_table, tmp_path, caplog):
    table = pg_table("CREATE TABLE {t} (id int, v text)")
    pg.execute(f"INSERT INTO {table} VALUES (1, repeat('a', 10))")
    options = dict(query=f"SELECT * FROM {table}", destination=str(tmp_path / "out"), state_dir=str(tmp_path))
    rivet.export(pg_url(), **options)
    pg.execute(f"INSERT INTO {table} VALUES (2, repeat('b', 15))")
    with caplog.at_level("WARNING", logger="rivet"):
        rivet.export(pg_url(), **options)
    assert "shape drift" not in caplog.text  # 15 bytes is under 2x the 10 seen before
    pg.execute(f"INSERT INTO {table} VALUES (3, repeat('c', 50))")
    with caplog.at_level("WARNING", logger="rivet"):
        rivet.export(pg_url(), **options)
    assert "shape drift: column v: a value of 50 bytes, over 2.0x the widest before (15)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="rivet"):
        rivet.export(pg_url(), **options, shape_drift_warn_factor=0)
    assert "shape drift" not in caplog.text


@pytest.mark.postgres
def test_meta_columns_are_not_drift_without_a_state_store_either(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    options = dict(
        query=f"SELECT * FROM {table}",
        destination=str(tmp_path / "out"),
        on_schema_drift="fail",
        meta_columns={"exported_at": True, "row_hash": True},
    )
    rivet.export(pg_url(), **options)
    again = rivet.export(pg_url(), **options)
    assert again.status == "success" and again.schema_drift is None


@pytest.mark.mysql
def test_a_resume_after_the_columns_changed_is_refused_rather_than_mixing_two_schemas(my_table, my_conn, tmp_path):
    from tests.chunkrun import kill_after_chunks, slow_mysql_chunked_export
    from tests.sources import numbers

    table = my_table(
        "CREATE TABLE {t} (id INT PRIMARY KEY, h CHAR(32));\n"
        f"INSERT INTO {{t}} SELECT i, MD5(i) FROM ({numbers(12000)}) AS n"
    )
    config = write_config(tmp_path, my_source(), slow_mysql_chunked_export(table, "*"))
    kill_after_chunks(config, 6)
    before = files_with_bytes(tmp_path / "out")
    with my_conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {table} ADD COLUMN extra INT")
    resumed = run_rivet("run", "-c", str(config), "--resume")
    assert resumed.returncode == 4, resumed.stderr
    assert "its published parts hold the old columns" in resumed.stderr and "1 added (extra: int32)" in resumed.stderr
    assert files_with_bytes(tmp_path / "out") == before
