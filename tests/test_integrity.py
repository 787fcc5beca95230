"""A run that did not read every row never looks complete; one writer per export; retries of whole reads."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import rivet
from rivet import _native
from rivet.config.tuning import PROFILES
from rivet.errors import ConfigError, IntegrityError
from rivet.sources.base import scan_options
from rivet.sources.postgres.source import PostgresSource
from rivet.state import StateStore
from rivet.state.lease import holder_id, process_space
from tests.chunkrun import kill_after_chunks, resume_and_check, rows_in_files
from tests.conftest import pg_url
from tests.outputs import rows_by_glob, rows_by_manifest, run_export_json, run_rivet, start_rivet

pytestmark = pytest.mark.postgres


def config_at(tmp_path: Path, exports: str, url: str | None = None) -> Path:
    path = tmp_path / "rivet.yaml"
    path.write_text(
        f'source:\n  type: postgres\n  url: "{url or pg_url()}"\nexports:\n' + textwrap.indent(exports, "  ")
    )
    return path


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll an observable condition until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def lease_of(tmp_path: Path, export: str) -> dict | None:
    db = tmp_path / ".rivet_state.db"
    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        try:
            row = conn.execute("SELECT run_id, holder FROM leases WHERE export_name = ?", (export,)).fetchone()
        except sqlite3.OperationalError:
            return None
    return {"run_id": row[0], "holder": row[1]} if row else None


@pytest.fixture
def slow(pg):
    name = f"rivet_slowi_{uuid.uuid4().hex[:8]}"
    pg.execute(
        f"CREATE FUNCTION {name}(v int, seconds float8) RETURNS int LANGUAGE plpgsql STABLE AS "
        "$$ BEGIN PERFORM pg_sleep(seconds); RETURN v; END $$"
    )
    yield name
    pg.execute(f"DROP FUNCTION {name}(int, float8)")


def test_skewed_rows_cannot_overflow_a_batch_and_every_row_is_published(tmp_path):
    # 200,000 tiny rows size the FETCHes, then 15,000 rows of 200 KB arrive: 3 GB in what
    # used to be one batch. Batches are cut per row, so all rows arrive at bounded memory.
    query = (
        "SELECT g AS id, CASE WHEN g <= 200000 THEN 'a' ELSE repeat('x', 200000) END AS doc "
        "FROM generate_series(1, 215000) g"
    )
    config = config_at(tmp_path, f'- name: skew\n  query: "{query}"\n  destination: out\n')
    result = run_export_json(config)
    assert result["code"] == 0, result["stderr"]
    assert result["rows"] == 215000 and result["status"] == "success"
    assert result["peak_rss_mb"] < 1024, result["peak_rss_mb"]
    ids = rows_by_manifest(tmp_path / "out", ["id"])
    assert sorted(k[0] for k in ids) == list(range(1, 215001))


def test_a_lost_connection_mid_stream_is_retried_to_an_exact_result(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 20000) AS i")
    config = config_at(
        tmp_path,
        f"- name: full\n  table: {t}\n  destination: out\n  tuning: {{batch_size: 1000, retry_backoff_ms: 10}}\n",
    )
    # The reader loses its connection after its second batch, once.
    result = run_export_json(config, env={"RIVET_FAILPOINTS": "socket_closed@2"})
    assert result["code"] == 0, result["stderr"]
    assert "rivet: failpoint socket_closed fired" in result["stderr"] and "retrying" in result["stderr"]
    expected = {(i,): 1 for i in range(1, 20001)}
    assert rows_by_manifest(tmp_path / "out", ["id"]) == expected
    assert rows_by_glob(tmp_path / "out", "full", ["id"]) == expected


def test_a_terminated_backend_in_a_full_export_is_retried_to_an_exact_result(pg, pg_table, slow, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 3000) AS i")
    app = f"rivet_term_{uuid.uuid4().hex[:8]}"
    config = config_at(
        tmp_path,
        f'- name: term\n  query: "SELECT {slow}(id, 0.002) AS id FROM {t}"\n  destination: out\n'
        "  tuning: {batch_size: 100, retry_backoff_ms: 10}\n",
        url=f"{pg_url()}&application_name={app}",
    )
    proc = start_rivet("run", "-c", str(config), "-e", "term", "--events")
    assert proc.stdout is not None
    # Wait for the export to report rows read, then terminate its backend mid-stream.
    for line in proc.stdout:
        event = json.loads(line)
        if event["type"] == "progress" and event["rows"] > 0:
            break
    killed = pg.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,)
    ).fetchall()
    assert killed and all(k[0] for k in killed)
    rest, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    events = [json.loads(line) for line in rest.splitlines()]
    retries = [e for e in events if e["type"] == "retry"]
    assert retries and retries[0]["chunk"] is None and "57P01" in retries[0]["reason"]
    assert events[-1]["type"] == "finished" and events[-1]["rows"] == 3000
    out = tmp_path / "out"
    expected = {(i,): 1 for i in range(1, 3001)}
    assert rows_by_manifest(out, ["id"]) == expected
    assert rows_by_glob(out, "term", ["id"]) == expected


def test_a_reader_panic_fails_the_export_and_publishes_nothing(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 5000) AS i")
    config = config_at(tmp_path, f"- name: p\n  table: {t}\n  destination: out\n  tuning: {{batch_size: 1000}}\n")
    result = run_export_json(config, env={"RIVET_FAILPOINTS": "reader_panic@2"})
    assert result["code"] == 1 and result["status"] == "failed"
    assert "rivet: failpoint reader_panic fired" in result["stderr"]
    assert "the reader thread panicked: failpoint reader_panic" in result["error"]
    out = tmp_path / "out"
    assert not (out / "_SUCCESS").exists() and not (out / "manifest.json").exists()
    assert rows_by_glob(out, "p", ["id"]) == {}


def chunked_slow(t: str, slow: str) -> str:
    return (
        f'- name: c\n  query: "SELECT id, {slow}(id, 0.002) AS s FROM {t}"\n  mode: chunked\n  chunk_column: id\n'
        "  chunk_size: 200\n  chunk_checkpoint: true\n  max_file_size: 1KB\n  destination: out\n"
    )


def test_a_second_run_of_a_running_export_is_refused_by_name(pg_table, slow, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 2000) AS i")
    config = config_at(tmp_path, chunked_slow(t, slow))
    first = start_rivet("run", "-c", str(config), text=False)
    wait_for(lambda: lease_of(tmp_path, "c") is not None, "the first run to take the lease")
    holder = lease_of(tmp_path, "c")
    assert holder is not None
    second = run_export_json(config)
    assert second["code"] == 1 and second["status"] == "failed"
    assert f"export 'c' is already running: run {holder['run_id']}" in second["error"]
    assert f"process {first.pid}" in second["error"]
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    expected = {(i,): 1 for i in range(1, 2001)}
    assert rows_by_manifest(tmp_path / "out", ["id"]) == expected
    assert rows_by_glob(tmp_path / "out", "c", ["id"]) == expected
    assert lease_of(tmp_path, "c") is None


def test_wait_runs_after_the_running_one_and_the_output_stays_exactly_once(pg_table, slow, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 1000) AS i")
    config = config_at(tmp_path, chunked_slow(t, slow))
    first = start_rivet("run", "-c", str(config), text=False)
    wait_for(lambda: lease_of(tmp_path, "c") is not None, "the first run to take the lease")
    second = run_export_json(config, "--wait")
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert second["code"] == 0, second["stderr"]
    # The second run replaced the first one's parts.
    expected = {(i,): 1 for i in range(1, 1001)}
    assert rows_by_manifest(tmp_path / "out", ["id"]) == expected
    assert rows_by_glob(tmp_path / "out", "c", ["id"]) == expected


def _plant_lease(tmp_path: Path, export: str, holder: str, heartbeat: float) -> None:
    store = StateStore(tmp_path / ".rivet_state.db")
    store.close()
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        conn.execute(
            "INSERT INTO leases (export_name, run_id, holder, acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)",
            (export, f"{export}_old", holder, "2026-01-01T00:00:00Z", heartbeat),
        )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    ("holder", "age_s"),
    [("elsewhere.example:4242:abc", 3600.0), (f"{socket.gethostname()}:{{dead}}:{process_space()}", 0.0)],
    ids=["stale-heartbeat", "dead-local-process"],
)
def test_a_lease_whose_holder_died_is_taken_over_and_said(pg_table, tmp_path, holder, age_s):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 100) AS i")
    config = config_at(tmp_path, f"- name: l\n  table: {t}\n  destination: out\n")
    _plant_lease(tmp_path, "l", holder.format(dead=_dead_pid()), time.time() - age_s)
    result = run_export_json(config)
    assert result["code"] == 0, result["stderr"]
    assert "took over the lease of run l_old" in result["stderr"]


def test_a_live_holder_keeps_its_lease(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    config = config_at(tmp_path, f"- name: l\n  table: {t}\n  destination: out\n")
    _plant_lease(tmp_path, "l", holder_id(), time.time())
    result = run_export_json(config)
    assert result["code"] == 1 and "is already running: run l_old" in result["error"]
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_resume_with_nothing_to_resume_starts_a_fresh_run(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 500) AS i")
    config = config_at(
        tmp_path,
        f"- name: r\n  table: {t}\n  mode: chunked\n  chunk_column: id\n  chunk_size: 100\n"
        "  chunk_checkpoint: true\n  destination: out\n",
    )
    result = run_export_json(config, "--resume")
    assert result["code"] == 0 and result["rows"] == 500, result["stderr"]
    assert "no unfinished chunked run to resume: starting a new run" in result["stderr"]


def test_resume_keeps_the_destination_and_rereads_chunks_whose_parts_changed(pg, pg_table, slow, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 2000) AS i")
    body = chunked_slow(t, slow).replace("destination: out", "destination: out/{date}")
    config = config_at(tmp_path, body)
    first = start_rivet("run", "-c", str(config), text=False)
    db = tmp_path / ".rivet_state.db"

    def done_chunks() -> int:
        try:
            with sqlite3.connect(db) as conn:
                return int(conn.execute("SELECT count(*) FROM chunk_tasks WHERE status = 'done'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0

    wait_for(lambda: done_chunks() >= 3, "three chunks to be done")
    first.kill()
    first.communicate(timeout=30)
    with sqlite3.connect(db) as conn:
        (folder,) = conn.execute("SELECT destination FROM chunk_runs").fetchone()
        # The folder {date} named on the day the run started (the day before; stored folders must be renderings).
        yesterday = re.sub(r"/out/\d{4}-\d{2}-\d{2}$", "/out/2000-01-02", folder)
        conn.execute("UPDATE chunk_runs SET destination = ?", (yesterday,))
        (stored,) = conn.execute("SELECT destination FROM chunk_runs").fetchone()
        done = conn.execute("SELECT parts FROM chunk_tasks WHERE status = 'done' ORDER BY chunk_index").fetchall()
    # Pretend the run started on another day: its parts live in that folder, not today's.
    Path(stored).parent.mkdir(parents=True, exist_ok=True)
    Path(folder).rename(stored)
    # One done chunk's part disappears, another's is altered: both must be read again.
    gone, changed = json.loads(done[0][0])[0]["name"], json.loads(done[1][0])[0]["name"]
    (Path(stored) / gone).unlink()
    with open(Path(stored) / changed, "r+b") as f:
        f.seek(20)
        f.write(b"\x00\x00\x00\x00")
    result = run_export_json(config, "--resume")
    assert result["code"] == 0, result["stderr"]
    assert "is read again" in result["stderr"]
    assert not Path(folder).exists() or not any(Path(folder).iterdir())
    expected = {(i,): 1 for i in range(1, 2001)}
    assert rows_by_manifest(Path(stored), ["id"]) == expected
    assert rows_by_glob(Path(stored), "c", ["id"]) == expected


def test_reconcile_compares_with_a_count_in_the_same_snapshot(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 1000) AS i")
    config = config_at(
        tmp_path,
        f"- name: ok\n  table: {t}\n  destination: out/ok\n"
        f'- name: bad\n  query: "SELECT id FROM {t} WHERE random() < 0.5"\n  destination: out/bad\n',
    )
    good = run_export_json(config, "-e", "ok", "--reconcile")
    assert good["code"] == 0 and good["rows"] == 1000, good["stderr"]
    # A volatile query gives the count and the read different rows, and the mismatch is caught.
    # Two samples of 1000 coin flips agree on their total about one time in 56: a few tries make
    # a run that agrees by chance vanishingly unlikely (a read-only transaction allows no sequence).
    for _ in range(5):
        bad = run_export_json(config, "-e", "bad", "--reconcile")
        if bad["code"] != 0:
            break
    assert bad["code"] == 3 and "reconcile: COUNT(*) in the same snapshot found" in bad["error"], bad["stderr"]
    assert not (tmp_path / "out" / "bad" / "_SUCCESS").exists()


def test_validate_reads_the_new_parts_back_before_committing(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 3000) AS i")
    config = config_at(tmp_path, f"- name: v\n  table: {t}\n  max_file_size: 10KB\n  destination: out\n")
    result = run_export_json(config, "--validate")
    assert result["code"] == 0 and len(result["files"]) > 1, result["stderr"]
    checked = run_rivet("validate", "-c", str(config))
    assert checked.returncode == 0 and "✓ v:" in checked.stdout and "3,000 rows" in checked.stdout


def test_rivet_validate_finds_every_kind_of_damage(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 3000) AS i")
    config = config_at(tmp_path, f"- name: d\n  table: {t}\n  max_file_size: 8KB\n  destination: out\n")
    assert run_export_json(config)["code"] == 0
    out = tmp_path / "out"
    parts = sorted(p for p in out.iterdir() if p.suffix == ".parquet")
    assert len(parts) >= 3
    parts[0].unlink()
    with open(parts[1], "r+b") as f:
        f.seek(10)
        f.write(b"\xff")
    (out / "d_20000101_000000_000.parquet").write_bytes(parts[2].read_bytes())
    checked = run_rivet("validate", "-c", str(config), "--json")
    assert checked.returncode == 3
    problems = " | ".join(p for e in json.loads(checked.stdout)["exports"] for p in e["problems"])
    assert f"{parts[0].name} is missing" in problems
    assert f"{parts[1].name} has SHA-256" in problems
    assert "d_20000101_000000_000.parquet is not in the manifest" in problems
    (out / "_SUCCESS").unlink()
    assert "no _SUCCESS" in run_rivet("validate", "-c", str(config)).stdout


def test_exports_may_share_a_folder_but_not_nest(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 100) AS i")
    shared = config_at(
        tmp_path,
        f"- name: a\n  table: {t}\n  destination: out\n- name: b\n  table: {t}\n  destination: out\n",
    )
    proc = run_rivet("run", "-c", str(shared))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    assert {"a.manifest.json", "b.manifest.json", "_SUCCESS.a", "_SUCCESS.b"} <= {p.name for p in out.iterdir()}
    assert rows_by_manifest(out, ["id"], "a.manifest.json") == {(i,): 1 for i in range(1, 101)}
    assert run_rivet("validate", "-c", str(shared)).returncode == 0
    nested = config_at(
        tmp_path,
        f"- name: a\n  table: {t}\n  destination: out\n- name: b\n  table: {t}\n  destination: out/b\n",
    )
    refused = run_rivet("run", "-c", str(nested))
    assert refused.returncode == 2
    assert "exports[b].destination" in refused.stderr and "inside the destination of export 'a'" in refused.stderr


def test_destinations_that_cannot_publish_atomically_are_refused(tmp_path):
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
    with pytest.raises(ConfigError, match="ftp:// cannot make a file visible only once it is complete"):
        rivet.export(str(db), table="t", destination="ftp://example.invalid/x")


def test_full_reruns_replace_the_previous_parts_unless_kept(pg, pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 100) AS i")
    config = config_at(tmp_path, f"- name: f\n  table: {t}\n  destination: out\n")
    assert run_export_json(config)["code"] == 0
    pg.execute(f"DELETE FROM {t} WHERE id > 50")
    assert run_export_json(config)["code"] == 0
    expected = {(i,): 1 for i in range(1, 51)}
    assert rows_by_glob(tmp_path / "out", "f", ["id"]) == expected == rows_by_manifest(tmp_path / "out", ["id"])
    kept = config_at(tmp_path, f"- name: f\n  table: {t}\n  destination: out\n  keep_superseded_parts: true\n")
    assert run_export_json(kept)["code"] == 0
    assert rows_by_manifest(tmp_path / "out", ["id"]) == expected
    assert sum(rows_by_glob(tmp_path / "out", "f", ["id"]).values()) == 100


def test_the_end_of_data_reports_the_server_count(pg_table, tmp_path):
    # The native reader checks every FETCH against its command tag; a healthy server always agrees,
    # so this asserts the agreement is actually reported with the end of the data.
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 2500) AS i")

    conn = PostgresSource(url=pg_url()).connect_args()
    reader = _native.PgSession(conn).scan(f"SELECT * FROM {t}", None, scan_options(PROFILES["balanced"]), {}, [])
    rows = 0
    while (batch := reader.next_batch()) is not None:
        rows += batch.num_rows
    assert reader.finished and reader.server_rows == rows == reader.rows_read == 2500


def test_checkpoints_keep_work_by_time_whatever_the_part_size(pg, pg_table, slow, tmp_path):
    # Parts of 512 MiB would never fill here: without a time bound no chunk would count before the end.
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 2000) AS i")
    body = chunked_slow(t, slow).replace("  max_file_size: 1KB\n", "  checkpoint_every_s: 0\n")
    config = config_at(tmp_path, body)
    before = kill_after_chunks(config, 3)
    assert 3 <= len(before) < 10  # the chunks of parts published by time, while the run went on
    files = resume_and_check(config, before)
    assert sorted(i for (i,) in rows_in_files(files, ["id"])) == list(range(1, 2001))


@pytest.mark.parametrize("mode", ["full", "chunked"])
def test_progress_counts_bytes_written_and_never_goes_down(pg_table, slow, tmp_path, mode):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 3000) AS i")
    chunking = "  mode: chunked\n  chunk_column: id\n  chunk_size: 300\n" if mode == "chunked" else ""
    config = config_at(
        tmp_path,
        f'- name: p\n  query: "SELECT id, h, {slow}(id, 0.0005) AS s FROM {t}"\n{chunking}'
        "  tuning: {batch_size: 100}\n  parquet: {row_group_strategy: fixed_rows, row_group_rows: 200}\n"
        "  destination: out\n",
    )
    ran = run_rivet("run", "-c", str(config), "--events", env={**os.environ, "RIVET_PROGRESS_EVERY_S": "0.05"})
    assert ran.returncode == 0, ran.stderr
    events = [json.loads(line) for line in ran.stdout.splitlines()]
    shown = [e["bytes"] for e in events if e["type"] == "progress"]
    final = events[-1]["bytes"]
    assert len(shown) >= 3 and shown == sorted(shown)  # never shrinks
    # Row groups of 200 rows reach the file as they fill: bytes show while the part is written, never above it.
    assert 0 < shown[len(shown) // 2] <= final


def test_a_part_whose_file_holds_fewer_rows_than_were_written_to_it_is_not_published(tmp_path, monkeypatch):
    # The Parquet library losing the last row of each row group it writes, while rivet counts them all.
    import pyarrow.parquet as pq

    write_table = pq.ParquetWriter.write_table

    def losing_a_row(self, table, row_group_size=None):
        write_table(self, table.slice(0, table.num_rows - 1), row_group_size=row_group_size)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", losing_a_row)
    query = "SELECT i AS id FROM generate_series(1, 1000) AS i"
    with pytest.raises(IntegrityError, match=r"holds 999 row\(s\) but 1000 were written to it"):
        rivet.export(pg_url(), query=query, destination=str(tmp_path / "out"), name="lossy")
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").iterdir() if p.suffix == ".parquet"]
