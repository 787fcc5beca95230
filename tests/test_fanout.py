"""Many exports at once: process isolation, signals, the event stream, plan and apply."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

import rivet
from rivet.app.fanout import run_processes
from rivet.app.planfiles import seal
from rivet.config import load_config
from rivet.core import events
from tests.chunkrun import chunk_runs, wait_for_done_chunks, wait_until
from tests.conftest import pg_source
from tests.outputs import run_rivet, start_rivet, write_config

pytestmark = pytest.mark.postgres

STATE = ".rivet_state.db"


@pytest.fixture
def slow(pg):
    name = f"rivet_slowf_{os.getpid()}_{int(time.monotonic() * 1000)}"
    pg.execute(
        f"CREATE FUNCTION {name}(v int, seconds float8) RETURNS int LANGUAGE plpgsql STABLE AS "
        "$$ BEGIN PERFORM pg_sleep(seconds); RETURN v; END $$"
    )
    yield name
    pg.execute(f"DROP FUNCTION {name}(int, float8)")


def config_with(tmp_path: Path, exports: str) -> Path:
    return write_config(tmp_path, pg_source(), exports)


def three_exports(tmp_path: Path, table: str, slow: str) -> Path:
    return config_with(
        tmp_path,
        textwrap.dedent(
            f"""\
            - name: quick_a
              query: "SELECT id FROM {table} WHERE id <= 100"
              destination: out/a
            - name: victim
              query: "SELECT id, {slow}(id, 0.002) AS s FROM {table}"
              mode: chunked
              chunk_column: id
              chunk_size: 200
              chunk_checkpoint: true
              # A part per chunk: chunks are done while the run goes on.
              max_file_size: 1KB
              destination: out/victim
            - name: quick_b
              query: "SELECT id FROM {table} WHERE id > 2900"
              destination: out/b
            """
        ),
    )


def manifest_ids(destination: Path) -> list[int]:
    """The ``id`` of every row in the parts the manifest of ``destination`` lists, sorted."""
    manifest = json.loads((destination / "manifest.json").read_text())
    return sorted(i for p in manifest["parts"] for i in pq.read_table(destination / p["name"])["id"].to_pylist())


def rivet_process(*args: str) -> subprocess.Popen[str]:
    return start_rivet(*args)


def child_of(parent: int, export: str, timeout: float = 20) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(parent).children():
            try:
                if export in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no child process for {export}")


def test_a_killed_child_fails_alone_and_resumes(pg_table, slow, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 3000) AS i")
    config = three_exports(tmp_path, t, slow)
    parent = rivet_process("run", "-c", str(config), "--parallel-export-processes", "--max-processes", "3", "--json")
    victim = child_of(parent.pid, "victim")
    # Some chunks done, the run not finished (15 chunks of 0.4 s each).
    wait_for_done_chunks(tmp_path / STATE, 1, export="victim", proc=parent)
    victim.send_signal(signal.SIGKILL)
    stdout, stderr = parent.communicate(timeout=60)
    assert parent.returncode == 1, stderr
    doc = json.loads(stdout)
    by_name = {e["name"]: e for e in doc["exports"]}
    assert by_name["quick_a"]["status"] == "success" and by_name["quick_a"]["rows"] == 100
    assert by_name["quick_b"]["status"] == "success" and by_name["quick_b"]["rows"] == 100
    assert by_name["victim"]["status"] == "failed"
    assert "killed by SIGKILL" in by_name["victim"]["error"]
    assert "failed: victim" in stderr
    assert doc["parallel_mode"] == "processes" and doc["failed_count"] == 1

    resumed = run_rivet("run", "-c", str(config), "-e", "victim", "--resume", "--json", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert manifest_ids(tmp_path / "out" / "victim") == list(range(1, 3001))


def test_sigterm_stops_every_child_and_leaves_none(pg_table, slow, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 3000) AS i")
    config = three_exports(tmp_path, t, slow)
    parent = rivet_process("run", "-c", str(config), "--parallel-export-processes", "--max-processes", "3")
    victim = child_of(parent.pid, "victim")
    children = psutil.Process(parent.pid).children()
    # The victim is mid-run: its chunked run is registered and has a chunk done.
    state = tmp_path / STATE
    wait_until(lambda: chunk_runs(state, "victim") > 0, "the victim's chunked run is registered", parent)
    wait_for_done_chunks(state, 1, export="victim", proc=parent)
    parent.send_signal(signal.SIGTERM)
    parent.communicate(timeout=30)
    assert parent.returncode == 130
    _, alive = psutil.wait_procs([*children, victim], timeout=5)
    assert alive == [], f"children left behind: {alive}"
    resumed = run_rivet("run", "-c", str(config), "-e", "victim", "--resume", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert manifest_ids(tmp_path / "out" / "victim") == list(range(1, 3001))


def test_every_event_of_a_child_validates(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 5000) AS i")
    config = config_with(
        tmp_path,
        f"- name: c\n  table: {t}\n  mode: chunked\n  chunk_column: id\n  chunk_size: 1000\n  destination: out\n",
    )
    proc = run_rivet("run", "-c", str(config), "-e", "c", "--events", timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["type"] for e in lines][:2] == ["started", "progress_init"] and lines[-1]["type"] == "finished"
    done = [e["chunks_done"] for e in lines if e["type"] == "progress"]
    assert set(done) == set(range(1, lines[1]["total_chunks"] + 1))  # a progress event for every chunk
    for e in lines:
        assert events.problems(e) == [], e
    assert lines[-1]["rows"] == 5000 and lines[-1]["status"] == "success"


def test_a_child_that_prints_garbage_and_dies_is_reported(tmp_path):
    config = config_with(tmp_path, "- name: odd\n  query: SELECT 1\n  destination: out\n")
    loaded = load_config(config)
    script = "import sys; print('this is not an event'); sys.stderr.write('boom\\n'); sys.exit(7)"
    (result,) = run_processes(loaded, ["odd"], max_processes=1, command=[sys.executable, "-c", script])
    assert result.status == "failed" and result.exit_code == 1
    assert "exited with status 7 without reporting a result" in result.error
    assert "this is not an event" in result.error and "boom" in result.error


def test_threads_mode_and_the_python_api(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 1000) AS i")
    config = config_with(
        tmp_path,
        f"- name: a\n  table: {t}\n  destination: out/a\n- name: b\n  query: SELECT 1 / 0 AS x\n  destination: out/b\n"
        f"- name: c\n  table: {t}\n  format: csv\n  destination: out/c\n",
    )
    for parallel in ("threads", "processes"):
        result = rivet.run(config, parallel=parallel)
        assert result.parallel_mode == parallel
        assert [e.status for e in result.exports] == ["success", "failed", "success"]
        assert result.exit_code == 1 and result["a"].rows == 1000 and result["c"].rows == 1000
    summaries = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from rivet.state import StateStore; s = StateStore('{tmp_path}/.rivet_state.db');"
            "print([a['parallel_mode'] for a in s.aggregates()])",
        ],
        capture_output=True,
        text=True,
    )
    assert "['processes', 'threads']" in summaries.stdout


def test_summary_output_file(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    config = config_with(tmp_path, f"- name: a\n  table: {t}\n  destination: out/a\n")
    summary = tmp_path / "summary.json"
    proc = run_rivet("run", "-c", str(config), "--summary-output", str(summary))
    assert proc.returncode == 0
    assert json.loads(summary.read_text())["exports"][0]["rows"] == 1


def test_plan_then_apply_writes_what_run_writes(pg, pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, updated_at int)")
    pg.execute(f"INSERT INTO {t} SELECT i, i FROM generate_series(1, 4000) AS i")
    config = config_with(
        tmp_path,
        f"- name: chunks\n  table: {t}\n  mode: chunked\n  chunk_size: 1000\n  parallel: 2\n  destination: out/chunks\n"
        f"- name: inc\n  table: {t}\n  mode: incremental\n  cursor_column: updated_at\n  destination: out/inc\n",
    )
    plan_file = tmp_path / "plan.json"
    made = run_rivet("plan", "-c", str(config), "-o", str(plan_file))
    assert made.returncode == 0, made.stderr
    plan = json.loads(plan_file.read_text())
    chunks = next(e for e in plan["exports"] if e["export"] == "chunks")
    assert chunks["strategy"] == "key-chunks" and len(chunks["chunks"]) >= 4 and chunks["row_estimate"] > 0
    assert "password" not in plan_file.read_text()

    applied = run_rivet("apply", str(plan_file), "--json")
    assert applied.returncode == 0, applied.stderr
    by_name = {e["name"]: e for e in json.loads(applied.stdout)["exports"]}
    assert by_name["chunks"]["rows"] == 4000
    # The planned chunks were read, each into one part.
    manifest = json.loads((tmp_path / "out" / "chunks" / "manifest.json").read_text())
    held = sorted(c for part in manifest["parts"] for c in part["chunks"])
    assert held == [c["index"] for c in chunks["chunks"]]
    assert by_name["inc"]["rows"] == 4000

    # The same plan again: the cursor has moved since, so apply refuses.
    again = run_rivet("apply", str(plan_file))
    assert again.returncode == 2 and "the cursor of export 'inc' moved since the plan was made" in again.stderr

    ran = rivet.run(config, ["chunks"])
    assert ran["chunks"].rows == 4000


def test_expired_or_changed_plan_is_refused(pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    config = config_with(tmp_path, f"- name: a\n  table: {t}\n  destination: out/a\n")
    plan_file = tmp_path / "plan.json"
    planned = run_rivet("plan", "-c", str(config), "-o", str(plan_file))
    assert planned.returncode == 0, planned.stderr
    doc = json.loads(plan_file.read_text())
    doc["expires_at"] = "2020-01-01T00:00:00.000Z"
    plan_file.write_text(json.dumps({**doc, "signature": seal(doc)}))
    expired = run_rivet("apply", str(plan_file))
    assert expired.returncode == 2 and "expired at 2020-01-01" in expired.stderr
    forced = run_rivet("apply", str(plan_file), "--force")
    assert forced.returncode == 0, forced.stderr
    config.write_text(config.read_text().replace("destination: out/a", "destination: out/a\n    format: csv"))
    changed = run_rivet("apply", str(plan_file), "--force")
    assert changed.returncode == 2 and "export 'a' changed" in changed.stderr


def test_a_plan_changed_after_it_was_made_is_refused_before_it_runs(pg, pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} AS SELECT i AS id FROM generate_series(1, 3000) AS i")
    victim = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    config = config_with(
        tmp_path,
        f"- name: c\n  table: {t}\n  mode: chunked\n  chunk_column: id\n  chunk_size: 1000\n  destination: out/c\n",
    )
    plan_file = tmp_path / "plan.json"
    made = run_rivet("plan", "-c", str(config), "-o", str(plan_file))
    assert made.returncode == 0, made.stderr
    original = json.loads(plan_file.read_text())
    tampered = json.loads(plan_file.read_text())
    chunk = tampered["exports"][0]["chunks"][0]
    chunk["query"] = f"SELECT 1 AS id; DROP TABLE {victim}; SELECT 1 AS id"
    for doc in (
        tampered,
        {**original, "config": str(tmp_path / "other.yaml")},
        {k: v for k, v in original.items() if k != "signature"},
    ):
        plan_file.write_text(json.dumps(doc))
        refused = run_rivet('apply', str(plan_file), '--force')  # fmt: skip
        assert refused.returncode == 2 and "was changed after it was made" in refused.stderr
    assert pg.execute(f"SELECT count(*) FROM {victim}").fetchone()[0] == 1


def test_plan_orders_reconciled_exports_last_and_warns_on_heavy_exports_sharing_a_source_group(pg, pg_table, tmp_path):
    t = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {t} SELECT generate_series(1, 100)")
    heavy = "mode: chunked\n  chunk_size: 50\n  parallel: 2\n  source_group: replica_a"
    config = config_with(
        tmp_path,
        f"- name: a\n  table: {t}\n  {heavy}\n  reconcile_required: true\n  destination: out/a\n"
        f"- name: b\n  table: {t}\n  {heavy}\n  destination: out/b\n"
        f"- name: c\n  table: {t}\n  source_group: replica_a\n  destination: out/c\n",
    )
    made = run_rivet("plan", "-c", str(config))
    assert made.returncode == 0, made.stderr
    plan = json.loads(made.stdout)
    assert [(e["export"], e["wave"]) for e in plan["exports"]] == [("c", 1), ("b", 3), ("a", 3)]
    assert plan["exports"][2]["reconcile_required"] is True and plan["exports"][0]["source_group"] == "replica_a"
    [warning] = plan["warnings"]
    assert "exports a, b share source_group replica_a" in warning
    assert f"warning: {warning}" in made.stderr
