"""The state store, the same tests on both backends: a SQLite file and a PostgreSQL database."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from rivet.errors import ExportBusyError, StateError
from rivet.state import MIGRATIONS, STATE_URL_VARIABLE, StateStore
from rivet.state.keys import ExportKey
from tests.conftest import MYSQL_URL, pg_url
from tests.outputs import assert_failpoint_ended, run_rivet, write_config

E = ExportKey("team-a", "e")
N = ExportKey("team-a", "n")
NOW = "2026-01-01T00:00:00.000Z"
LATER = "2026-01-01T01:00:00.000Z"


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if request.param == "sqlite":
        return tmp_path / ".rivet_state.db"
    return request.getfixturevalue("pg_state_url")


@pytest.fixture
def store(location: str | Path) -> Iterator[StateStore]:
    s = StateStore(location)
    yield s
    s.close()


def _set_version(location: str | Path, version: int) -> None:
    if isinstance(location, Path):
        with sqlite3.connect(location) as conn:
            conn.execute(f"PRAGMA user_version = {version}")
        return
    with psycopg.connect(location, autocommit=True) as conn:
        conn.execute("UPDATE rivet_state.schema_version SET version = %s", (version,))


def test_the_schema_is_migrated_once_and_a_newer_one_refused(location):
    first = StateStore(location)
    assert first.version == len(MIGRATIONS)
    first.set_cursor(E, "5", "5", "r1", NOW)
    first.close()
    again = StateStore(location)  # opening a current store changes nothing
    assert again.version == len(MIGRATIONS) and again.cursor(E).value == "5"
    again.close()
    _set_version(location, len(MIGRATIONS) + 1)
    with pytest.raises(StateError, match="newer than this rivet understands"):
        StateStore(location)


def test_runs_files_and_publication(store):
    store.run_started("r1", E, "full", NOW, "fp", "/out", "e_20260101_000000_000")
    assert store.run_published("r1") is False and store.run_published("nope") is None
    store.mark_published("r1", LATER)
    store.run_finished(
        "r1",
        status="success",
        finished_at=LATER,
        rows=3_000_000_000,
        files=2,
        nbytes=5 * 2**40,
        duration_ms=1500,
        peak_rss_mb=210.5,
        engine="native",
        error=None,
    )
    store.log_files("r1", E, [("/out/a.parquet", 10, 100, "ab" * 32), ("/out/b.parquet", 5, 50, "cd" * 32)], LATER)
    (run,) = store.runs([E])
    assert run["rows"] == 3_000_000_000 and run["bytes"] == 5 * 2**40 and run["peak_rss_mb"] == 210.5
    assert store.last_success(E)["run_id"] == "r1"
    assert [f["url"] for f in store.files(E)] == ["/out/a.parquet", "/out/b.parquet"]
    store.run_started("r2", E, "full", LATER, "fp", "/out", "e_20260101_010000_000")
    assert store.published_since(E, "/out", None) == ["r1"] and store.published_since(E, "/out", "r1") == []
    names = ["e_20260101_010000_000.parquet", "e_20260101_000000_000.parquet", "other.parquet"]
    assert store.stray_parts(E, names, live={"e_20260101_000000_000.parquet"}) == ["e_20260101_010000_000.parquet"]


def test_chunk_checkpoints(store):
    chunks = [(i, f"SELECT {i}", f"[{i}]", ("whole",)) for i in range(4)]
    store.create_chunk_run("c1", E, "fp", "e_stem", NOW, chunks, "/out")
    assert store.open_chunk_run(E).run_id == "c1"
    assert store.claim_chunk_at("c1", 0, NOW).query == "SELECT 0"
    assert store.claim_chunk_at("c1", 0, NOW) is None  # taken already
    store.claim_chunk_at("c1", 1, NOW)
    assert store.open_chunk_indexes("c1") == ({2, 3}, {0, 1})
    part = {"name": "e_stem_chunk00000.parquet", "url": "/out/x", "rows": 7, "bytes": 70, "sha256": "00" * 32}
    store.chunks_done("c1", [(0, 7)], [part], LATER)
    store.release_chunks("c1", [1], LATER)
    store.claim_chunk_at("c1", 2, NOW)
    store.chunk_failed("c1", 2, "boom", LATER)
    tasks = {t.chunk_index: t for t in store.chunk_tasks("c1")}
    assert tasks[0].status == "done" and tasks[0].rows == 7 and tasks[0].parts == [part]
    assert tasks[1].status == "pending" and tasks[2].last_error == "boom"
    assert store.requeue_with_status("c1", "failed", LATER) == 1
    store.requeue_chunks("c1", [0], LATER)
    assert {t.status for t in store.chunk_tasks("c1")} == {"pending"}
    store.finish_chunk_run("c1", LATER)
    assert store.open_chunk_run(E) is None and store.latest_chunk_run(E).status == "completed"
    assert store.resumable_stems(E) == set() and store.resumable_stems(E, any_status=True) == {"e_stem"}
    assert store.reset_chunks(E) == 0 and store.chunk_tasks("c1") != []  # a completed run is kept by default
    assert store.reset_chunks(E, finished_too=True) == 1 and store.chunk_tasks("c1") == []


def test_cursors_and_boundary_rows(store):
    store.set_cursor(E, "2026-01-01", "'2026-01-01'", "r1", NOW)
    store.set_cursor(E, "2026-01-02", "'2026-01-02'", "r2", LATER)
    assert store.cursor(E).value == "2026-01-02" and store.cursor(ExportKey("team-b", "e")) is None
    hashes = [-(2**63), 2**63 - 1, 0, 0, 42]  # 64-bit row hashes, a duplicate among them
    store.set_boundary(E, "cursor", "9", "9", hashes, "r2", LATER)
    assert sorted(store.boundary_hashes(E, "cursor")) == sorted(set(hashes))
    assert store.boundary(E, "cursor").strict == 0
    store.set_boundary(E, "cursor", "10", "10", None, "r3", LATER)
    assert store.boundary(E, "cursor").strict == 1 and store.boundary_hashes(E, "cursor") == []
    assert store.reset_cursor(E) is True and store.cursor(E) is None and store.boundary(E, "cursor") is None
    assert store.reset_cursor(E) is False


def test_leases_refuse_a_live_holder_and_take_over_a_gone_one(location, store):
    assert store.take_lease(E, "r1", "host:1", 60.0, lambda holder: False) is None
    other = StateStore(location)  # another process (or machine) on the same state
    try:
        with pytest.raises(ExportBusyError, match="already running"):
            other.take_lease(E, "r2", "host:2", 60.0, lambda holder: False)
        taken = other.take_lease(E, "r2", "host:2", 60.0, lambda holder: holder == "host:1")
        assert taken.run_id == "r1"
        assert store.renew_lease(E, "r1") is False and other.renew_lease(E, "r2") is True
        store.release_lease(E, "r1")  # not its lease any more: a no-op
        assert other.lease(E).run_id == "r2"
        other.release_lease(E, "r2")
        assert store.lease(E) is None
    finally:
        other.close()


def test_schemas_shapes_journals_and_aggregates(store):
    store.save_schema(E, [{"name": "id", "arrow_type": "int64"}], "r1", NOW)
    store.save_schema(E, [{"name": "id", "arrow_type": "int32"}], "r2", LATER)
    assert store.published_schema(E) == [{"name": "id", "arrow_type": "int32"}]
    store.save_widest_values(E, {"title": 40, "body": 10})
    store.save_widest_values(E, {"title": 20, "body": 30})
    assert store.widest_values(E) == {"title": 40, "body": 30}
    store.save_journal("r1", E, NOW, [{"type": "started"}])
    store.save_journal("r1", E, LATER, [{"type": "started"}, {"type": "finished"}])
    store.save_journal("r2", E, NOW, [])
    assert [j["run_id"] for j in store.journals(E, limit=5)] == ["r1", "r2"]
    assert len(store.journals(E, run_id="r1")[0]["events"]) == 2
    for code in (0, 1):
        summary = {
            "parallel_mode": "none",
            "exit_code": code,
            "exports": [],
            "success_count": 0,
            "failed_count": code,
            "total_rows": 0,
            "total_bytes": 0,
        }
        store.record_aggregate(summary, NOW)
    assert [a["exit_code"] for a in store.aggregates()] == [1, 0]


def test_a_transaction_commits_all_or_nothing(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.set_cursor(E, "1", "1", "r1", NOW)
        store.mark_published("r1", NOW)
        raise RuntimeError("the commit failed halfway")
    assert store.cursor(E) is None
    with store.transaction():
        store.set_cursor(E, "1", "1", "r1", NOW)
    assert store.cursor(E).value == "1"


def test_writers_of_one_state_take_turns(location):
    stores = [StateStore(location) for _ in range(4)]
    errors: list[BaseException] = []

    def bump(s: StateStore) -> None:
        try:
            for _ in range(25):
                with s.transaction():
                    value = int(cursor.value if (cursor := s.cursor(N)) else "0")
                    s.set_cursor(N, str(value + 1), str(value + 1), "r", NOW)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=bump, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and stores[0].cursor(N).value == "100"  # no increment lost
    finally:
        for s in stores:
            s.close()


# -- runs that keep their state in PostgreSQL (RIVET_STATE_URL) ---------------------------


def _machine(tmp_path: Path, name: str, source: str, export: str) -> Path:
    """A config directory, as on one machine of several sharing one state database."""
    home = tmp_path / name
    home.mkdir()
    return write_config(home, source, f"- {export}\n")


def _ids(out: Path) -> list[int]:
    return sorted(i for p in out.glob("*.parquet") for i in pq.read_table(p).column("id").to_pylist())


@pytest.mark.postgres
def test_a_cursor_in_postgresql_is_continued_by_another_machine(pg, pg_table, pg_state_url, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 100)")
    source = f'{{type: postgres, url: "{pg_url()}"}}'
    # One destination both machines reach (as a bucket would be): the same export, so the same state.
    lake = tmp_path / "lake"
    export = f"{{name: inc, table: {table}, mode: incremental, cursor_column: id, destination: '{lake}'}}"
    first, second = _machine(tmp_path, "a", source, export), _machine(tmp_path, "b", source, export)
    env = {STATE_URL_VARIABLE: pg_state_url}
    assert run_rivet("run", "-c", str(first), env=env).returncode == 0
    assert _ids(lake) == list(range(1, 101))
    pg.execute(f"INSERT INTO {table} SELECT generate_series(101, 130)")
    ran = run_rivet("run", "-c", str(second), env=env)
    assert ran.returncode == 0, ran.stderr
    assert _ids(lake) == list(range(1, 131))  # each row once: the second machine continued the cursor
    assert not any(p.name.startswith(".rivet_state") for p in tmp_path.rglob("*"))
    shown = run_rivet("state", "show", "-c", str(second), "--json", env=env)
    assert json.loads(shown.stdout)["exports"][0]["cursor"] == "130"


@pytest.mark.postgres
def test_a_chunked_run_killed_midway_resumes_from_checkpoints_in_postgresql(pg, pg_table, pg_state_url, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, h text)")
    pg.execute(f"INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series(1, 3000) i")
    export = (
        f"{{name: c, table: {table}, mode: chunked, chunk_column: id, chunk_size: 500, chunk_checkpoint: true, "
        "max_file_size: 1KB, destination: out}"
    )
    config = _machine(tmp_path, "a", f'{{type: postgres, url: "{pg_url()}"}}', export)
    env = {STATE_URL_VARIABLE: pg_state_url}
    killed = run_rivet("run", "-c", str(config), env={**env, "RIVET_FAILPOINTS": "after_part_write@3:crash"})
    assert_failpoint_ended(killed, "after_part_write@3:crash", -9)
    chunks = json.loads(run_rivet("state", "chunks", "-c", str(config), "-e", "c", "--json", env=env).stdout)
    done = [c for c in chunks["chunks"] if c["status"] == "done"]
    assert 0 < len(done) < len(chunks["chunks"])
    resumed = run_rivet("run", "-c", str(config), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((config.parent / "out" / "manifest.json").read_text())
    files = [config.parent / "out" / p["name"] for p in manifest["parts"]]
    assert sorted(i for f in files for i in pq.read_table(f).column("id").to_pylist()) == list(range(1, 3001))


@pytest.mark.mysql
def test_mariadb_exports_keep_their_state_in_postgresql(my_table, my_conn, pg_state_url, tmp_path):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s)", [(i,) for i in range(1, 51)])
    export = f"{{name: inc, table: {table}, mode: incremental, cursor_column: id, destination: out}}"
    config = _machine(tmp_path, "a", f'{{type: mysql, url: "{MYSQL_URL}"}}', export)
    env = {STATE_URL_VARIABLE: pg_state_url}
    assert run_rivet("run", "-c", str(config), env=env).returncode == 0
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s)", [(i,) for i in range(51, 61)])
    assert run_rivet("run", "-c", str(config), env=env).returncode == 0
    assert _ids(config.parent / "out") == list(range(1, 61))
    runs = json.loads(run_rivet("metrics", "-c", str(config), "--json", env=env).stdout)
    assert [r["rows"] for r in runs["runs"]] == [10, 50]


def test_an_unreachable_state_database_is_one_clear_error(tmp_path):
    config = _machine(tmp_path, "a", "{type: sqlite, path: db.sqlite}", "{name: t, table: t, destination: out}")
    env = {STATE_URL_VARIABLE: "postgresql://rivet:s3cret@127.0.0.1:1/state?connect_timeout=2"}
    ran = run_rivet("run", "-c", str(config), env=env)
    assert ran.returncode != 0 and "state store postgresql://rivet:***@127.0.0.1:1/state" in ran.stderr, ran.stderr
    assert "s3cret" not in ran.stderr
