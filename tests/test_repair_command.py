"""rivet repair: the chunks a reconcile flags are read again and their parts replaced in the manifest."""

from __future__ import annotations

import collections
import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import MYSQL_URL, my_query, pg_url
from tests.outputs import (
    assert_failpoint_ended,
    files_with_bytes,
    globbed_files,
    rows_by_glob,
    rows_by_manifest,
    run_rivet,
    write_config,
)


def _config(tmp_path: Path, source: str, table: str, max_file_size: str = "512MB", extra: str = "") -> Path:
    body = (
        f"- name: c\n  table: {table}\n  mode: chunked\n  chunk_column: id\n  chunk_size: 100\n"
        f"  chunk_checkpoint: true\n  max_file_size: {max_file_size}\n  destination: out\n"
    )
    return write_config(tmp_path, source, body + textwrap.indent(textwrap.dedent(extra), "  "))


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _assert_published_exactly(out: Path, source_rows: list[tuple]) -> None:
    """The manifest's parts and a glob both give the source's rows, and _SUCCESS vouches for the manifest."""
    expected = collections.Counter(source_rows)
    assert rows_by_manifest(out, ["id", "pad"]) == expected
    assert rows_by_glob(out, "c", ["id", "pad"]) == expected
    digest = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert (out / "_SUCCESS").read_text() == f"sha256:{digest}\n"


@pytest.mark.postgres
def test_repair_replaces_only_the_parts_of_changed_chunks(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
    pg.execute(f"INSERT INTO {table} SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 500) i WHERE i <> 250")
    # Parts of 1 kB hold one chunk each: a changed chunk replaces one part.
    config = _config(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', table, max_file_size="1KB")
    assert run_rivet("run", "-c", str(config)).returncode == 0
    out = tmp_path / "out"
    before = _manifest(out)
    assert len(before["parts"]) > 3 and all(len(p["chunks"]) == 1 for p in before["parts"])
    pg.execute(f"DELETE FROM {table} WHERE id BETWEEN 10 AND 14")
    pg.execute(f"INSERT INTO {table} VALUES (250, 'late')")
    report = json.loads(run_rivet("reconcile", "-c", str(config), "-e", "c", "--json").stdout)
    changed = [p["chunk"] for p in report["partitions"] if p["status"] == "mismatch"]
    assert len(changed) == 2

    untouched = files_with_bytes(out)
    dry = run_rivet("repair", "-c", str(config), "-e", "c")
    assert dry.returncode == 0, dry.stderr
    replaced = sum(p["chunks"][0] in changed for p in before["parts"])  # a chunk may span parts
    assert f"would read chunk(s) {changed[0]}, {changed[1]} again, replacing {replaced} part(s)" in dry.stderr
    assert files_with_bytes(out) == untouched

    done = run_rivet("repair", "-c", str(config), "-e", "c", "--execute", "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    source_rows = {p["chunk"]: p["source_count"] for p in report["partitions"]}
    assert outcome["executed"] and outcome["chunks"] == changed
    assert outcome["rows"] == source_rows[changed[0]] + source_rows[changed[1]]
    after = _manifest(out)
    assert after["run_id"] == before["run_id"] and after["repairs"][0]["chunks"] == changed
    assert after["row_count"] == 495
    kept = {p["name"] for p in before["parts"]} & {p["name"] for p in after["parts"]}
    assert kept == {p["name"] for p in before["parts"] if p["chunks"][0] not in changed}
    assert sorted(p.name for p in globbed_files(out, "c")) == sorted(p["name"] for p in after["parts"])
    _assert_published_exactly(out, [tuple(r) for r in pg.execute(f"SELECT id, pad FROM {table}").fetchall()])

    clean = run_rivet("reconcile", "-c", str(config), "-e", "c")
    assert clean.returncode == 0, clean.stderr
    again = run_rivet("repair", "-c", str(config), "-e", "c", "--execute")
    assert again.returncode == 0 and "nothing to repair" in again.stderr, again.stderr
    files = json.loads(run_rivet("state", "files", "-c", str(config), "-e", "c", "--json", "--last", "1000").stdout)
    assert {p["name"] for p in after["parts"]} <= {Path(f["url"]).name for f in files["files"]}


@pytest.mark.postgres
def test_repair_reads_every_chunk_of_a_shared_part_and_restores_a_missing_part(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
    pg.execute(f"INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series(1, 300) i")
    config = _config(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', table)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    out = tmp_path / "out"
    [part] = _manifest(out)["parts"]
    chunks = part["chunks"]
    assert len(chunks) > 1
    (out / part["name"]).unlink()
    dry = run_rivet("repair", "-c", str(config), "-e", "c", "--json")
    flagged = json.loads(dry.stdout)["flagged"]
    assert [f["chunk"] for f in flagged] == chunks and "is missing" in flagged[0]["reason"]
    done = run_rivet("repair", "-c", str(config), "-e", "c", "--execute")
    assert done.returncode == 0, done.stderr
    assert f"read chunk(s) {', '.join(map(str, chunks))} again, replacing 1 part(s)" in done.stderr
    _assert_published_exactly(out, [tuple(r) for r in pg.execute(f"SELECT id, pad FROM {table}").fetchall()])


@pytest.mark.mysql
def test_repair_on_mariadb_from_a_saved_report(my_table, my_conn, tmp_path):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(i, f"{i:0>60}") for i in range(1, 401)])
    meta = "    meta_columns: {exported_at: true, row_hash: true}\n"
    config = _config(tmp_path, f'{{type: mysql, url: "{MYSQL_URL}"}}', table, max_file_size="1KB", extra=meta)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    with my_conn.cursor() as cur:
        cur.execute(f"DELETE FROM {table} WHERE id > 390")
    report = tmp_path / "report.json"
    assert run_rivet("reconcile", "-c", str(config), "-e", "c", "-o", str(report)).returncode == 3
    done = run_rivet("repair", "-c", str(config), "-e", "c", "--report", str(report), "--execute", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["chunks"] == [json.loads(report.read_text())["partitions"][-1]["chunk"]]
    out = tmp_path / "out"
    _assert_published_exactly(out, my_query(my_conn, f"SELECT id, pad FROM {table}"))
    # Repaired rows carry the repair's time; every row keeps its hash.
    stamps = rows_by_manifest(out, ["_rivet_exported_at"])
    assert len(stamps) == 2 and sum(stamps.values()) == 390
    assert len(rows_by_manifest(out, ["_rivet_row_hash"])) == 390
    # The report was made before the repair: its counts no longer describe the run.
    stale = run_rivet("repair", "-c", str(config), "-e", "c", "--report", str(report), "--execute")
    assert stale.returncode == 2 and "reconcile again" in stale.stderr, stale.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("point", ["before_manifest", "before_success"])
def test_a_repair_killed_midway_is_completed_by_the_next(pg, pg_table, tmp_path, point):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
    pg.execute(f"INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series(1, 300) i")
    config = _config(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', table, max_file_size="1KB")
    assert run_rivet("run", "-c", str(config)).returncode == 0
    pg.execute(f"DELETE FROM {table} WHERE id = 150")
    killed = run_rivet("repair", "-c", str(config), "-e", "c", "--execute", env={"RIVET_FAILPOINTS": f"{point}:crash"})
    assert_failpoint_ended(killed, point, -9)
    out = tmp_path / "out"
    done = run_rivet("repair", "-c", str(config), "-e", "c", "--execute")
    assert done.returncode == 0, done.stderr
    if point == "before_success":
        assert "wrote the manifest again from the state" in done.stderr, done.stderr
    else:
        assert "read chunk(s)" in done.stderr, done.stderr
    _assert_published_exactly(out, [tuple(r) for r in pg.execute(f"SELECT id, pad FROM {table}").fetchall()])


@pytest.mark.postgres
def test_repair_refuses_what_it_cannot_repair(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
    pg.execute(f"INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series(1, 200) i")
    config = _config(tmp_path, f'{{type: postgres, url: "{pg_url()}"}}', table)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    refused = run_rivet("repair", "-c", str(config), "-e", "c", "--report", str(bad))
    assert refused.returncode == 2 and "bad.json: not a report of `rivet reconcile`" in refused.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"export": "c", "run_id": "c-0", "partitions": []}))
    refused = run_rivet("repair", "-c", str(config), "-e", "c", "--report", str(other))
    assert refused.returncode == 2 and "reconcile again" in refused.stderr
    pg.execute(f"ALTER TABLE {table} ADD COLUMN extra int")
    pg.execute(f"DELETE FROM {table} WHERE id = 5")
    untouched = files_with_bytes(tmp_path / "out")
    drifted = run_rivet("repair", "-c", str(config), "-e", "c", "--execute")
    assert drifted.returncode == 4 and "columns changed since run" in drifted.stderr, drifted.stderr
    assert files_with_bytes(tmp_path / "out") == untouched
