"""Chunked exports read by the workers of a Dask cluster (a real LocalCluster of two worker processes).

The coordinator plans, keeps the state and publishes; every row must come back
exactly once, also when the workers are killed mid-run, and the connections to
the source must stay within the export's ``parallel`` across the whole cluster.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import dask
import distributed
import psycopg
import pytest
import yaml

import rivet
from rivet.errors import ChunkError, QueryError, hint_for
from rivet.execution.cluster import NO_WORKERS_VARIABLE
from rivet.state.backends import STATE_URL_VARIABLE
from tests.chunkrun import done_chunks, kill_after_chunks, resume_and_check, wait_until
from tests.conftest import MYSQL_URL, PG_URL, my_query
from tests.otlp import otlp_collector
from tests.outputs import rows_by_manifest, run_rivet, write_config

ROWS = 3000


@pytest.fixture(scope="module")
def cluster():
    # Leases of a killed worker expire sooner, so its chunk's retry does not wait 30 s for one.
    with dask.config.set(
        {
            "distributed.scheduler.locks.lease-timeout": "5s",
            "distributed.scheduler.locks.lease-validation-interval": "500ms",
        }
    ):
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        ) as local:
            yield local


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c


def chunked_config(tmp_path: Path, url: str, query: str, **export: object) -> Path:
    """A chunked, checkpointed export of ``query`` (keys in ``export`` override), for the cluster to read."""
    body = {
        "name": "orders",
        "query": query,
        "mode": "chunked",
        "chunk_column": "id",
        "chunk_size": 250,
        "parallel": 2,
        "chunk_checkpoint": True,
        "destination": {"type": "local", "path": str(tmp_path / "out")},
        "tuning": {"retry_backoff_ms": 10},
        **export,
    }
    kind = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}[url.split(":", 1)[0]]
    return write_config(tmp_path, {"type": kind, "url": url}, [body])


def numbered(pg_table) -> str:
    """A table of ROWS rows: id 1..ROWS and a payload."""
    return pg_table(f"CREATE TABLE {{t}} AS SELECT i AS id, md5(i::text) AS payload FROM generate_series(1, {ROWS}) i")


def source_rows(conn, sql: str) -> collections.Counter:
    return collections.Counter(tuple(r) for r in conn.execute(sql).fetchall())


def published_names(out: Path) -> set[str]:
    return {p["name"] for p in json.loads((out / "manifest.json").read_text())["parts"]}


def assert_no_stray_parts(out: Path) -> None:
    """Every data file at the destination is a part the manifest lists."""
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*.parquet")}
    assert on_disk == published_names(out)
    assert not list(out.glob(".rivet-*.tmp"))


@pytest.mark.postgres
def test_pg_chunks_on_the_cluster_give_every_row_once_under_one_snapshot(pg, pg_table, client, tmp_path):
    table = pg_table(
        f"CREATE TABLE {{t}} AS SELECT i AS id, md5(i::text) AS payload, (i * 1.25)::numeric(12,2) AS amount "
        f"FROM generate_series(1, {ROWS}) AS i"
    )
    config = chunked_config(tmp_path, PG_URL, f"SELECT id, payload, amount FROM {table}", snapshot="consistent")
    result = rivet.run(config, dask_client=client)
    export = result.exports[0]
    assert result.ok, export.error
    assert export.engine == "native@dask"
    assert sum(c.rows for c in export.chunks) == ROWS
    assert len(export.parts) == len(export.chunks) >= ROWS // 250  # a part per chunk, each from a task
    out = tmp_path / "out"
    expected = source_rows(pg, f"SELECT id, payload, amount FROM {table}")
    assert rows_by_manifest(out, ["id", "payload", "amount"]) == expected
    assert_no_stray_parts(out)


@pytest.mark.mysql
def test_mariadb_chunks_on_the_cluster_through_the_command_line(my_conn, my_table, cluster, tmp_path):
    table = my_table("CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(10,2), at DATETIME(6))")
    values = ",".join(f"({i}, 'n{i}', {i}.25, '2026-01-01 00:00:00.{i:06d}')" for i in range(1, ROWS + 1))
    my_query(my_conn, f"INSERT INTO {table} VALUES {values}")
    config = chunked_config(tmp_path, MYSQL_URL, f"SELECT id, name, price, at FROM {table}")
    proc = run_rivet("run", "-c", str(config), "--json", "--dask-scheduler", cluster.scheduler_address)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["exports"][0]
    assert summary["engine"] == "native@dask"
    expected = collections.Counter(tuple(r) for r in my_query(my_conn, f"SELECT id, name, price, at FROM {table}"))
    assert rows_by_manifest(tmp_path / "out", ["id", "name", "price", "at"]) == expected
    assert_no_stray_parts(tmp_path / "out")


@pytest.mark.postgres
def test_chunks_read_on_the_cluster_each_have_a_span_under_the_export(pg, pg_table, cluster, tmp_path):
    table = numbered(pg_table)
    config = chunked_config(tmp_path, PG_URL, f"SELECT id, payload FROM {table}")
    with otlp_collector() as collector:
        config.write_text(config.read_text() + f"telemetry: {{otlp_endpoint: {collector.url}}}\n")
        proc = run_rivet("run", "-c", str(config), "--json", "--dask-scheduler", cluster.scheduler_address)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["exports"][0]
    assert summary["engine"] == "native@dask"
    spans = collector.spans()
    (exported,) = [s for s in spans if s.name == "export orders"]
    chunks = [s for s in spans if s.name == "chunk"]
    assert {s.parent for s in chunks} == {exported.span_id}
    indexes = sorted(s.attributes["rivet.chunk"] for s in chunks)
    assert indexes == list(range(len(chunks))) and len(chunks) >= ROWS // 250
    assert (
        sum(s.attributes["rivet.rows"] for s in chunks)
        == ROWS
        == sum(rows_by_manifest(tmp_path / "out", ["id"]).values())
    )


@pytest.mark.postgres
def test_a_chunk_that_fails_on_a_worker_fails_the_run_with_the_servers_code_and_publishes_nothing(
    pg, pg_table, client, tmp_path
):
    table = pg_table(f"CREATE TABLE {{t}} AS SELECT i AS id FROM generate_series(1, {ROWS}) AS i")
    config = chunked_config(tmp_path, PG_URL, f"SELECT id, 1 / (id - 1600) AS x FROM {table}")
    export = rivet.run(config, dask_client=client).exports[0]
    assert export.status == "failed"
    failed = re.match(r"chunk (\d+) \[(\d+), (\d+)\) failed after 1 attempt", export.error)
    assert failed and int(failed[2]) <= 1600 < int(failed[3]), export.error
    assert "division by zero" in export.error
    cause = export.exception.__cause__
    assert type(cause).__name__ == "QueryError" and cause.code == "22012"  # crossed from the worker whole
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    state = tmp_path / ".rivet_state.db"
    assert sqlite_rows(state, "SELECT chunk_index FROM chunk_tasks WHERE status = 'failed'") == [(int(failed[1]),)]


@pytest.mark.postgres
def test_a_second_run_on_the_cluster_replaces_the_first_runs_parts(pg, pg_table, client, tmp_path):
    table = numbered(pg_table)
    config = chunked_config(tmp_path, PG_URL, f"SELECT id, payload FROM {table}")
    for _ in range(2):
        result = rivet.run(config, dask_client=client)
        assert result.ok, result.exports[0].error
    assert rows_by_manifest(tmp_path / "out", ["id", "payload"]) == source_rows(pg, f"SELECT id, payload FROM {table}")
    assert_no_stray_parts(tmp_path / "out")  # the first run's parts are gone, not beside the second's


@pytest.mark.postgres
def test_a_failed_run_without_checkpoints_leaves_no_part(pg, pg_table, client, tmp_path):
    table = pg_table(f"CREATE TABLE {{t}} AS SELECT i AS id FROM generate_series(1, {ROWS}) AS i")
    query = f"SELECT id, 1 / (id - 2900) AS x FROM {table}"
    config = chunked_config(tmp_path, PG_URL, query, chunk_checkpoint=False)
    export = rivet.run(config, dask_client=client).exports[0]
    assert export.status == "failed" and "division by zero" in export.error
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_a_chunk_error_crosses_processes_with_its_cause_and_code():
    cause = QueryError("ERROR: division by zero", code="22012")
    error = ChunkError("chunk 3 [1, 2) failed after 1 attempt(s)", cause=cause)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ChunkError and str(copy) == str(error) and copy.exit_code == error.exit_code
    assert type(copy.__cause__) is QueryError and copy.__cause__.code == "22012"
    assert hint_for(copy) == hint_for(cause)


@pytest.fixture
def slow(pg):
    """A STABLE function that sleeps per row a chunk outputs (planning never calls it)."""
    name = f"rivet_dask_slow_{os.getpid()}"
    pg.execute(
        f"CREATE OR REPLACE FUNCTION {name}(v int, seconds float8) RETURNS int LANGUAGE plpgsql STABLE AS "
        "$$ BEGIN PERFORM pg_sleep(seconds); RETURN v; END $$"
    )
    yield name
    pg.execute(f"DROP FUNCTION {name}(int, float8)")


def sqlite_row(path: Path, sql: str) -> tuple:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchone()


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def slowed(slow: str, table: str, seconds: float = 0.005) -> str:
    """The query of ``table`` whose every row takes ``seconds``: chunks long enough to act during."""
    return f"SELECT id, payload, {slow}(id, {seconds}) AS slowed FROM {table}"


def coordinator(config: Path, address: str, env: dict[str, str], **popen: object) -> subprocess.Popen:
    """``rivet run`` of ``config`` on the cluster at ``address``, in a process of its own."""
    command = [sys.executable, "-m", "rivet", "run", "-c", str(config), "--dask-scheduler", address]
    return subprocess.Popen(command, env={**os.environ, **env}, **popen)  # type: ignore[call-overload]


def run_in_thread(config: Path, client) -> tuple[threading.Thread, list]:
    results: list = []
    thread = threading.Thread(target=lambda: results.append(rivet.run(config, dask_client=client)), daemon=True)
    thread.start()
    return thread, results


@pytest.mark.postgres
def test_workers_killed_mid_run_still_give_every_row_exactly_once(pg, pg_table, slow, client, tmp_path):
    table = numbered(pg_table)
    # Each chunk of 250 rows takes over a second, so the workers die while chunks are in flight.
    query = slowed(slow, table)
    config = chunked_config(tmp_path, PG_URL, query)
    state = tmp_path / ".rivet_state.db"
    before = client.run(os.getpid)
    thread, results = run_in_thread(config, client)
    wait_until(lambda: done_chunks(state, "orders") >= 2, "two chunks are done")
    assert done_chunks(state, "orders") < ROWS // 250, "the run ended before the workers could be killed"
    for pid in before.values():
        os.kill(pid, signal.SIGKILL)
    # What a worker killed after writing leaves: a part no chunk lists, a staged file.
    out = tmp_path / "out"
    run_id, stem = sqlite_row(state, "SELECT run_id, part_stem FROM chunk_runs WHERE export_name = 'orders'")
    (out / f"{stem}_chunk00003_0badc0de.parquet").write_bytes(b"PAR1 not a part PAR1")
    (out / f".rivet-{run_id}-c3-0-0badc0de.tmp").write_bytes(b"half a part")
    thread.join(300)
    assert not thread.is_alive()
    export = results[0].exports[0]
    assert results[0].ok, export.error
    assert set(client.run(os.getpid).values()).isdisjoint(before.values())  # the nannies started new workers
    assert rows_by_manifest(out, ["id", "payload"]) == source_rows(pg, f"SELECT id, payload FROM {table}")
    assert_no_stray_parts(out)


@pytest.mark.postgres
def test_every_task_reads_under_the_coordinators_snapshot(pg, pg_table, slow, client, tmp_path):
    table = numbered(pg_table)
    before = source_rows(pg, f"SELECT id, payload FROM {table}")
    query = slowed(slow, table)
    config = chunked_config(tmp_path, PG_URL, query, snapshot="consistent")
    state = tmp_path / ".rivet_state.db"
    thread, results = run_in_thread(config, client)
    wait_until(lambda: done_chunks(state, "orders") >= 1, "a chunk is done")
    pg.execute(f"UPDATE {table} SET payload = 'changed after the run started'")
    assert done_chunks(state, "orders") < ROWS // 250, "the run ended before the update"
    thread.join(300)
    assert results[0].ok, results[0].exports[0].error
    assert rows_by_manifest(tmp_path / "out", ["id", "payload"]) == before


@pytest.mark.postgres
def test_a_table_read_in_page_ranges_on_the_cluster(pg, pg_table, client, tmp_path):
    table = numbered(pg_table)
    pg.execute(f"ANALYZE {table}")
    config = tmp_path / "rivet.yaml"
    export = {
        "name": "pages",
        "table": table,
        "parallel": 2,
        "destination": {"type": "local", "path": str(tmp_path / "out")},
    }
    config.write_text(json.dumps({"source": {"type": "postgres", "url": PG_URL}, "exports": [export]}))
    result = rivet.run(config, dask_client=client)
    assert result.ok, result.exports[0].error
    assert result.exports[0].engine == "native@dask"
    assert rows_by_manifest(tmp_path / "out", ["id", "payload"]) == source_rows(pg, f"SELECT id, payload FROM {table}")
    assert_no_stray_parts(tmp_path / "out")


@pytest.mark.postgres
def test_a_coordinator_killed_mid_run_resumes_on_the_cluster(pg, pg_table, slow, cluster, tmp_path):
    table = numbered(pg_table)
    config = chunked_config(tmp_path, PG_URL, slowed(slow, table))
    on_cluster = ("--dask-scheduler", cluster.scheduler_address)
    before = kill_after_chunks(config, 2, args=on_cluster)
    assert len(before) < ROWS // 250, "the run ended before it could be killed"
    resume_and_check(config, before, args=on_cluster)
    assert rows_by_manifest(tmp_path / "out", ["id", "payload"]) == source_rows(pg, f"SELECT id, payload FROM {table}")
    assert_no_stray_parts(tmp_path / "out")


@pytest.mark.postgres
def test_another_machine_resumes_a_dead_coordinators_run_from_state_in_postgresql(
    pg, pg_table, slow, cluster, pg_state_url, tmp_path
):
    table = numbered(pg_table)
    query = slowed(slow, table)
    out = tmp_path / "out"
    first, second = (tmp_path / "a", tmp_path / "b")
    for home in (first, second):
        home.mkdir()
        chunked_config(home, PG_URL, query, destination={"type": "local", "path": str(out)})
    env = {STATE_URL_VARIABLE: pg_state_url}
    on_cluster = ["--dask-scheduler", cluster.scheduler_address]
    running = coordinator(first / "rivet.yaml", cluster.scheduler_address, env)
    with psycopg.connect(pg_state_url, autocommit=True) as state:

        def done() -> int:
            sql = "SELECT count(*) FROM rivet_state.chunk_tasks WHERE status = 'done'"
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                return state.execute(sql).fetchone()[0]
            return 0

        wait_until(lambda: done() >= 2, "two chunks are done", running)
        running.kill()
        running.wait()
        assert done() < ROWS // 250, "the run ended before its coordinator could be killed"
    resumed = run_rivet("run", "-c", str(second / "rivet.yaml"), "--resume", "--json", *on_cluster, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert rows_by_manifest(out, ["id", "payload"]) == source_rows(pg, f"SELECT id, payload FROM {table}")
    assert_no_stray_parts(out)


@pytest.mark.postgres
def test_connections_to_the_source_stay_within_parallel_across_the_cluster(pg, pg_table, client, tmp_path):
    # Four worker threads in the cluster, parallel: 2. Every chunk's read holds one of two
    # advisory-lock slots for as long as it reads; a third reader at once finds none and
    # fails its query, so the bound is kept by the server, not sampled.
    table = numbered(pg_table)
    gate = f"rivet_two_readers_{os.getpid()}"
    pg.execute(
        f"CREATE OR REPLACE FUNCTION {gate}(v int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN "
        "IF coalesce(current_setting('rivet.slot', true), '') = '' THEN "
        "  IF pg_try_advisory_xact_lock(4242, 1) THEN PERFORM set_config('rivet.slot', '1', true); "
        "  ELSIF pg_try_advisory_xact_lock(4242, 2) THEN PERFORM set_config('rivet.slot', '2', true); "
        "  ELSE RAISE EXCEPTION 'a third chunk reader at once'; END IF; "
        "END IF; PERFORM pg_sleep(0.001); RETURN v; END $$"
    )
    try:
        query = f"SELECT id, payload, {gate}(id) AS gated FROM {table}"
        config = chunked_config(tmp_path, PG_URL, query, chunk_size=150, tuning={"max_retries": 0})
        readers: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            # Only to see that two readers did run at once: the slots above are the bound.
            while not stop.is_set() and max(readers, default=0) < 2:
                sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 4242 AND objsubid = 2"
                readers.append(pg.execute(sql).fetchone()[0])

        observer = threading.Thread(target=watch, daemon=True)
        observer.start()
        try:
            result = rivet.run(config, dask_client=client)
        finally:
            stop.set()
            observer.join()
        assert result.ok, result.exports[0].error
        assert max(readers) == 2, "the chunks never ran two at a time"
        expected = source_rows(pg, f"SELECT id, payload FROM {table}")
        assert rows_by_manifest(tmp_path / "out", ["id", "payload"]) == expected
    finally:
        pg.execute(f"DROP FUNCTION {gate}(int)")


@pytest.fixture
def own_cluster(tmp_path):
    """A scheduler and a worker in processes of their own, for the test to kill."""
    address_file = tmp_path / "scheduler.json"
    bin_dir = Path(sys.executable).parent
    scheduler = subprocess.Popen(
        [
            bin_dir / "dask",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            address_file,
        ],
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: address_file.exists() and address_file.stat().st_size > 0, "the scheduler is up", scheduler)
    address = json.loads(address_file.read_text())["address"]
    worker = subprocess.Popen(
        [bin_dir / "dask", "worker", address, "--nthreads", "2", "--no-nanny", "--no-dashboard"],
        stderr=subprocess.DEVNULL,
    )
    with distributed.Client(address, set_as_default=False) as watcher:
        wait_until(lambda: len(watcher.scheduler_info()["workers"]) == 1, "the worker joined", worker)
    yield address, scheduler, worker
    for proc in (scheduler, worker):
        proc.kill()
        proc.wait()


@pytest.mark.postgres
def test_a_lost_scheduler_fails_the_run_cleanly_and_it_resumes_elsewhere(
    pg, pg_table, slow, own_cluster, cluster, tmp_path
):
    address, scheduler, worker = own_cluster
    table = numbered(pg_table)
    config = chunked_config(tmp_path, PG_URL, slowed(slow, table))
    state = tmp_path / ".rivet_state.db"
    quick = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    run = coordinator(config, address, quick, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: done_chunks(state, "orders") >= 2, "two chunks are done", run)
    scheduler.kill()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr
    assert "lost the Dask scheduler" in stderr, stderr
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    worker.kill()  # what a worker does on its own once the scheduler is gone for its death timeout
    worker.wait()
    before = dict(sqlite_rows(state, "SELECT chunk_index, parts FROM chunk_tasks WHERE status = 'done'"))
    assert 2 <= len(before) < ROWS // 250
    resume_and_check(config, before, args=("--dask-scheduler", cluster.scheduler_address))
    assert rows_by_manifest(tmp_path / "out", ["id", "payload"]) == source_rows(pg, f"SELECT id, payload FROM {table}")


@pytest.mark.postgres
def test_a_cluster_left_without_workers_fails_the_run_instead_of_waiting_forever(
    pg, pg_table, slow, own_cluster, tmp_path
):
    address, _, worker = own_cluster
    table = numbered(pg_table)
    config = chunked_config(tmp_path, PG_URL, slowed(slow, table))
    state = tmp_path / ".rivet_state.db"
    run = coordinator(config, address, {NO_WORKERS_VARIABLE: "3"}, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: done_chunks(state, "orders") >= 1, "a chunk is done", run)
    worker.kill()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr
    assert "has had no worker for 3 s" in stderr and "--resume" in stderr


def test_doctor_checks_the_cluster_and_the_rivet_on_its_workers(cluster, tmp_path):
    config = chunked_config(tmp_path, "sqlite:///" + str(tmp_path / "none.db"), "SELECT 1 AS id")
    checked = run_rivet("doctor", "-c", str(config), "--json", "--dask-scheduler", cluster.scheduler_address)
    found = {c["check"]: c for c in json.loads(checked.stdout)["checks"] if c["subject"] == "cluster"}
    assert found["scheduler"]["status"] == "ok" and "2 worker(s)" in found["scheduler"]["detail"]
    assert found["workers"]["status"] == "ok" and rivet.__version__ in found["workers"]["detail"]
    quick = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    checked = run_rivet("doctor", "-c", str(config), "--json", "--dask-scheduler", "tcp://127.0.0.1:9", env=quick)
    assert checked.returncode == 1
    scheduler = next(c for c in json.loads(checked.stdout)["checks"] if c["subject"] == "cluster")
    assert scheduler["status"] == "fail" and "cannot reach the Dask scheduler" in scheduler["detail"]


def test_an_unreachable_scheduler_is_a_clear_error_and_nothing_is_written(tmp_path):
    config = chunked_config(tmp_path, "sqlite:///" + str(tmp_path / "none.db"), "SELECT 1 AS id")
    proc = run_rivet(
        "run",
        "-c",
        str(config),
        "--dask-scheduler",
        "tcp://127.0.0.1:9",
        env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )
    assert proc.returncode == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_executor_dask_in_the_config_needs_an_address(tmp_path):
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            """
            source: {url: "sqlite:///x.db"}
            executor: {type: dask}
            exports: [{name: a, query: "SELECT 1", destination: {type: local, path: out}}]
            """
        )
    )
    proc = run_rivet("check", "--config-only", "-c", str(config))
    assert proc.returncode == 2
    assert "executor: type dask needs the scheduler's address" in proc.stderr


# -- credentials stay on their side of the cluster -------------------------------------------


SECRETS = {"RIVET_T_PGURL": "postgresql://postgres:pg-Secret-1@127.0.0.1:5432/test", "RIVET_T_KEY": "AKIA-key-2",
           "RIVET_T_SECRET": "s3-Secret-3", "RIVET_T_TOKEN": "session-Secret-4"}  # fmt: skip


def _set_variable(name: str, value: str | None) -> None:
    """On every worker: set (or, with None, unset) an environment variable."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _secret_plan(tmp_path: Path, monkeypatch, source: dict[str, object] | None = None):
    from rivet.config import load_config
    from rivet.plan.export import build_plan

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "rivet.yaml"
    body = {
        "source": source or {"type": "postgres", "url_env": "RIVET_T_PGURL"},
        "exports": [
            {
                "name": "orders",
                "query": "SELECT 1 AS id",
                "mode": "chunked",
                "chunk_column": "id",
                "destination": {
                    "type": "s3",
                    "bucket": "b",
                    "access_key_env": "RIVET_T_KEY",
                    "secret_key_env": "RIVET_T_SECRET",
                    "session_token_env": "RIVET_T_TOKEN",
                },
            }
        ],
    }
    config.write_text(json.dumps(body))
    loaded = load_config(config)
    return build_plan(loaded, loaded.config.exports[0])


def test_a_task_carries_no_secret_only_where_each_worker_reads_it(tmp_path, monkeypatch):
    import cloudpickle

    from rivet.execution.cluster import portable_plan

    plan = _secret_plan(tmp_path, monkeypatch)
    assert plan.source.url == SECRETS["RIVET_T_PGURL"]  # the coordinator itself has them
    shipped = cloudpickle.dumps((portable_plan(plan), plan.destination.without_secrets()))
    for value in SECRETS.values():
        assert value.encode() not in shipped
    assert b"pg-Secret" not in shipped and b"Secret" not in shipped
    # On a worker: read from its own environment, and named when it is missing there.
    worker_plan, worker_dest = cloudpickle.loads(shipped)
    assert worker_plan.source.with_secrets().url == SECRETS["RIVET_T_PGURL"]
    assert worker_dest.with_secrets().storage_options["secret"] == SECRETS["RIVET_T_SECRET"]
    monkeypatch.delenv("RIVET_T_SECRET")
    with pytest.raises(rivet.ConfigError, match="environment variable RIVET_T_SECRET is not set on this worker"):
        worker_dest.with_secrets()
    monkeypatch.delenv("RIVET_T_PGURL")
    with pytest.raises(rivet.ConfigError, match=r"RIVET_T_PGURL \(source.url_env\) is not set on this worker"):
        worker_plan.source.with_secrets()


def test_a_secret_written_in_the_config_never_goes_to_the_workers(tmp_path, monkeypatch):
    from rivet.execution.cluster import portable_plan

    written = {"type": "postgres", "host": "db", "user": "u", "database": "d", "password": "written-Secret"}
    plan = _secret_plan(tmp_path, monkeypatch, written)
    with pytest.raises(rivet.ConfigError, match=r"source\.password is written in the config"):
        portable_plan(plan)


def _config_with_password(tmp_path: Path, monkeypatch, table: str) -> tuple[Path, dict]:
    """A chunked export of ``table`` whose source URL, read from the environment, holds a password.

    Trust authentication ignores the password, but the config has one: it counts.
    """
    monkeypatch.setenv("RIVET_T_PGURL", f"{PG_URL.partition('?')[0].replace('postgres@', 'postgres:pw@')}")
    config = chunked_config(tmp_path, PG_URL, f"SELECT * FROM {table}")
    body = yaml.safe_load(config.read_text())
    body["source"] = {"type": "postgres", "url_env": "RIVET_T_PGURL"}
    config.write_text(json.dumps(body))
    return config, body


@pytest.mark.postgres
def test_a_plaintext_scheduler_is_refused_for_exports_with_credentials(client, pg, pg_table, tmp_path, monkeypatch):
    t = numbered(pg_table)
    config, body = _config_with_password(tmp_path, monkeypatch, t)
    refused = rivet.run(config, dask_client=client)
    assert refused.exit_code == 2 and "reached over plain tcp://" in refused["orders"].error
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.parquet"))
    body["executor"] = {"allow_plaintext": True}
    config.write_text(json.dumps(body))
    # The workers started before the variable was set: each says which credential it lacks.
    missing = rivet.run(config, dask_client=client)
    assert "environment variable RIVET_T_PGURL (source.url_env) is not set on this worker" in missing["orders"].error
    client.run(_set_variable, "RIVET_T_PGURL", os.environ["RIVET_T_PGURL"])
    allowed = rivet.run(config, dask_client=client, resume=True)
    client.run(_set_variable, "RIVET_T_PGURL", None)
    assert allowed.exit_code == 0, allowed["orders"].error
    assert rows_by_manifest(tmp_path / "out", ["id", "payload"]) == source_rows(pg, f"SELECT id, payload FROM {t}")


@pytest.mark.postgres
def test_chunks_run_on_a_tls_cluster_with_credentials(pg, pg_table, tmp_path, monkeypatch):
    from distributed.security import Security

    t = numbered(pg_table)
    config, _ = _config_with_password(tmp_path, monkeypatch, t)
    security = Security.temporary()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, protocol="tls", security=security,
            dashboard_address=":0", silence_logs=logging.ERROR,
        ) as tls_cluster,
        distributed.Client(tls_cluster, security=security, set_as_default=False) as tls_client,
    ):  # fmt: skip
        assert tls_cluster.scheduler_address.startswith("tls://")
        result = rivet.run(config, dask_client=tls_client)
    assert result.exit_code == 0, result["orders"].error
    assert result["orders"].engine == "native@dask"
    assert rows_by_manifest(tmp_path / "out", ["id", "payload"]) == source_rows(pg, f"SELECT id, payload FROM {t}")
