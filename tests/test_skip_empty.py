"""skip_empty: a run that reads no rows publishes nothing and leaves the destination as it was."""

from __future__ import annotations

import json
import textwrap

import pyarrow.parquet as pq
import pytest

import rivet
from tests.conftest import MYSQL_URL, pg_url, visible_parts
from tests.outputs import files_with_bytes, run_rivet


@pytest.mark.postgres
def test_an_empty_full_run_publishes_nothing_and_keeps_the_last_output(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, v text)")
    pg.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - {{name: t, query: "SELECT * FROM {table}", destination: out, skip_empty: true}}
            """
        )
    )
    first = rivet.run(str(config))
    assert first.ok and first["t"].status == "success"
    before = files_with_bytes(tmp_path / "out")
    pg.execute(f"DELETE FROM {table}")
    run = run_rivet("run", "-c", str(config), "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert [e["status"] for e in summary["exports"]] == ["skipped"]
    assert files_with_bytes(tmp_path / "out") == before
    [part] = visible_parts(tmp_path / "out")
    assert pq.read_table(part).num_rows == 2


@pytest.mark.postgres
def test_an_empty_incremental_run_is_skipped_and_its_cursor_stays(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, v text)")
    result = rivet.export(
        pg_url(),
        query=f"SELECT * FROM {table}",
        mode="incremental",
        cursor_column="id",
        destination=str(tmp_path / "out"),
        state_dir=str(tmp_path),
        skip_empty=True,
    )
    assert result.ok and result.status == "skipped" and result.rows == 0
    assert visible_parts(tmp_path / "out") == []
    pg.execute(f"INSERT INTO {table} VALUES (5, 'x')")
    again = rivet.export(
        pg_url(),
        query=f"SELECT * FROM {table}",
        mode="incremental",
        cursor_column="id",
        destination=str(tmp_path / "out"),
        state_dir=str(tmp_path),
        skip_empty=True,
    )
    assert again.status == "success" and again.rows == 1


@pytest.mark.mysql
def test_an_empty_chunked_run_on_mariadb_takes_its_parts_back(my_table, my_conn, tmp_path):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(i, f"v{i}") for i in range(1, 51)])
    options = dict(table=table, mode="chunked", chunk_size=10, parallel=2, skip_empty=True)
    first = rivet.export(MYSQL_URL, destination=str(tmp_path / "out"), **options)
    assert first.status == "success" and first.rows == 50
    before = files_with_bytes(tmp_path / "out")
    with my_conn.cursor() as cur:
        cur.execute(f"DELETE FROM {table}")
    second = rivet.export(MYSQL_URL, destination=str(tmp_path / "out"), **options)
    assert second.ok and second.status == "skipped" and second.parts == []
    assert files_with_bytes(tmp_path / "out") == before


@pytest.mark.postgres
def test_validate_says_what_never_published_and_passes(pg, pg_table, tmp_path):
    empty = pg_table("CREATE TABLE {t} (id int)")
    full = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - {{name: skipped, table: {empty}, destination: skipped, skip_empty: true}}
              - {{name: published, table: {full}, destination: published}}
              - {{name: later, table: {full}, destination: later}}
            """
        )
    )
    ran = run_rivet('run', '-c', str(config), '-e', 'skipped', '-e', 'published')  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    checked = run_rivet("validate", "-c", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr  # a `run && validate` job passes
    assert "– skipped: nothing published: its last run (skipped_" in checked.stdout and "was skipped" in checked.stdout
    assert "– later: nothing published: it never ran" in checked.stdout
    assert "✓ published: 1 part(s), 1 rows" in checked.stdout
    # Published once, then its output removed: that is a broken destination, not a skipped one.
    (tmp_path / "published" / "manifest.json").unlink()
    broken = run_rivet("validate", "-c", str(config))
    assert broken.returncode == 3 and "✗ published" in broken.stdout
