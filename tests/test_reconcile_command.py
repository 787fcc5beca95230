"""rivet reconcile: each chunk of the last checkpointed run counted again on the source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import MYSQL_URL, pg_url
from tests.outputs import run_rivet, write_config


def _config(tmp_path: Path, source: str, table: str) -> Path:
    return write_config(
        tmp_path,
        source,
        f"""\
        - {{name: c, table: {table}, mode: chunked, chunk_size: 100, chunk_checkpoint: true, destination: out}}
        - {{name: f, table: {table}, destination: full}}
        """,
    )


@pytest.mark.postgres
def test_reconcile_finds_the_chunks_whose_rows_changed_since(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 500)")
    config = _config(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', table)
    assert run_rivet("run", "-c", str(config), "-e", "c").returncode == 0
    clean = run_rivet("reconcile", "-c", str(config), "-e", "c")
    assert clean.returncode == 0, clean.stderr
    assert "500 rows on the source, 500 exported" in clean.stderr
    verified = json.loads(run_rivet("state", "progression", "-c", str(config), "--json").stdout)["exports"]
    assert verified[0]["verified"]["ok"] is True and "chunks" in verified[0]["committed"]
    assert verified[1] == {"export": "f", "mode": "full", "committed": None, "verified": None}
    pg.execute(f"DELETE FROM {table} WHERE id BETWEEN 10 AND 14")
    report_file = tmp_path / "report.json"
    changed = run_rivet("reconcile", "-c", str(config), "-e", "c", "--json", "-o", str(report_file))
    assert changed.returncode == 3
    report = json.loads(changed.stdout)
    assert report == json.loads(report_file.read_text())
    [bad] = [p for p in report["partitions"] if p["status"] != "match"]
    assert bad["status"] == "mismatch" and bad["source_count"] == bad["exported_count"] - 5
    assert report["summary"]["total_source_rows"] == 495 and report["summary"]["total_exported_rows"] == 500
    shown = run_rivet("state", "progression", "-c", str(config), "-e", "c")
    assert "found 1 mismatch(es)" in shown.stdout, shown.stdout
    refused = run_rivet("reconcile", "-c", str(config), "-e", "f")
    assert refused.returncode == 2 and "has no checkpointed chunked run to reconcile" in refused.stderr


@pytest.mark.mysql
def test_reconcile_on_mariadb_matches_an_unchanged_table(my_table, my_conn, tmp_path):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s)", [(i,) for i in range(1, 351)])
    config = _config(tmp_path, f'{{type: mysql, url: "{MYSQL_URL}"}}', table)
    assert run_rivet("run", "-c", str(config), "-e", "c").returncode == 0
    report = json.loads(run_rivet("reconcile", "-c", str(config), "-e", "c", "--json").stdout)
    assert report["summary"]["mismatches"] == 0 and report["summary"]["total_source_rows"] == 350
    assert all(p["status"] == "match" for p in report["partitions"])


@pytest.mark.postgres
def test_reconcile_refuses_a_run_whose_output_was_taken_back(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 300)")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n'
        f"  - {{name: c, table: {table}, mode: chunked, chunk_size: 100, chunk_checkpoint: true, "
        "destination: out, quality: {row_count_max: 10}}\n"
    )
    assert run_rivet("run", "-c", str(config)).returncode == 3
    refused = run_rivet("reconcile", "-c", str(config), "-e", "c")
    assert refused.returncode == 2 and "failed a check and its output was taken back" in refused.stderr
