"""Configs sharing a state store keep their exports apart; state is read only by the export it was written for."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from rivet.state import STATE_URL_VARIABLE, StateStore
from rivet.state.keys import NAMESPACE_VARIABLE
from rivet.state.lease import holder_id, process_space
from tests.conftest import pg_url
from tests.outputs import is_stopped, run_rivet, start_rivet

SOURCE = f'{{type: postgres, url: "{pg_url()}"}}'


def _config(path: Path, table: str, *, name: str = "orders", extra: str = "", destination: str = "out") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"source: {SOURCE}\n{extra}exports:\n"
        f"  - {{name: {name}, table: {table}, mode: incremental, cursor_column: id, destination: '{destination}'}}\n"
    )
    return path


def _ids(folder: Path) -> list[int]:
    """Every id in the parts the manifest lists (what a reader of the destination gets)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    return sorted(i for p in manifest["parts"] for i in pq.read_table(folder / p["name"]).column("id").to_pylist())


def _run(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    ran = run_rivet("run", "-c", str(config), env=env)
    assert ran.returncode == 0, ran.stderr
    return ran


def _two_regions(pg, pg_table):  # type: ignore[no-untyped-def]
    eu = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    us = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {eu} SELECT generate_series(1, 1000)")
    pg.execute(f"INSERT INTO {us} SELECT generate_series(1, 500)")
    return eu, us


@pytest.mark.postgres
@pytest.mark.parametrize("layout", ["two-folders-postgres-state", "one-folder-state-file"])
def test_two_configs_with_an_export_of_the_same_name_keep_their_cursors_apart(
    pg, pg_table, pg_state_url, tmp_path, layout
):
    eu, us = _two_regions(pg, pg_table)
    if layout == "two-folders-postgres-state":
        env = {STATE_URL_VARIABLE: pg_state_url}
        eu_config = _config(tmp_path / "eu" / "rivet.yaml", eu)
        us_config = _config(tmp_path / "us" / "rivet.yaml", us)
    else:
        env = {}
        eu_config = _config(tmp_path / "eu.yaml", eu, destination="out/eu")
        us_config = _config(tmp_path / "us.yaml", us, destination="out/us")
    eu_out = eu_config.parent / ("out" if layout.startswith("two") else "out/eu")
    us_out = us_config.parent / ("out" if layout.startswith("two") else "out/us")
    _run(eu_config, env)
    _run(us_config, env)
    assert _ids(eu_out) == list(range(1, 1001)) and _ids(us_out) == list(range(1, 501))
    pg.execute(f"INSERT INTO {us} SELECT generate_series(501, 1200)")
    pg.execute(f"INSERT INTO {eu} SELECT generate_series(1001, 1100)")
    _run(us_config, env)
    _run(eu_config, env)
    assert _ids(us_out) == list(range(1, 1201))
    assert _ids(eu_out) == list(range(1, 1101))
    if layout == "one-folder-state-file":
        assert [p.name for p in tmp_path.glob(".rivet_state.db")] == [".rivet_state.db"]  # one store, shared
    shown = json.loads(run_rivet("state", "show", "-c", str(us_config), "--json", env=env).stdout)["exports"][0]
    assert shown["cursor"] == "1200" and shown["namespace"].startswith("auto-")


@pytest.mark.postgres
def test_a_named_namespace_refuses_state_written_for_another_table_until_told(pg, pg_table, tmp_path):
    eu, us = _two_regions(pg, pg_table)
    config = _config(tmp_path / "rivet.yaml", eu, extra="state: {namespace: shop}\n")
    _run(config)
    # The same export name and namespace, now reading another table: its cursor (1000) would skip us rows.
    _config(config, us, extra="state: {namespace: shop}\n")
    refused = run_rivet("run", "-c", str(config))
    assert refused.returncode == 2, refused.stderr
    assert f"was written for another export: table or query 'table:\"{eu}\"'" in refused.stderr
    assert f"rivet state rebind -c {config} -e orders" in refused.stderr
    assert f"rivet state reset -c {config} -e orders" in refused.stderr
    assert _ids(tmp_path / "out") == list(range(1, 1001))  # nothing published by the refused run
    reset = run_rivet("state", "reset", "-c", str(config), "-e", "orders")
    assert reset.returncode == 0, reset.stderr
    _run(config)
    # Afresh: the us table whole, appended to what the export published before, as the user asked.
    assert _ids(tmp_path / "out") == sorted([*range(1, 1001), *range(1, 501)])
    assert run_rivet("run", "-c", str(config)).returncode == 0


@pytest.mark.postgres
def test_the_namespace_variable_keeps_the_state_of_a_config_that_moved(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 100)")
    lake = tmp_path / "lake"
    env = {NAMESPACE_VARIABLE: "team-a"}
    first = _config(tmp_path / "old" / "rivet.yaml", table, destination=str(lake))
    _run(first, env)
    (tmp_path / "old").rename(tmp_path / "new")  # the state file moves with the config
    pg.execute(f"INSERT INTO {table} SELECT generate_series(101, 150)")
    moved = _config(tmp_path / "new" / "rivet.yaml", table, destination=str(lake), extra="# moved\n")
    _run(moved, env)
    assert _ids(lake) == list(range(1, 151))
    bad = run_rivet("run", "-c", str(moved), env={NAMESPACE_VARIABLE: "no spaces"})
    assert bad.returncode == 2 and f"{NAMESPACE_VARIABLE}: 'no spaces' is not a namespace" in bad.stderr


@pytest.mark.postgres
def test_an_edited_query_into_the_same_destination_is_refused_and_rebind_continues_the_cursor(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, note text)")
    pg.execute(f"INSERT INTO {table} SELECT i, 'n' || i FROM generate_series(1, 300) i")
    config = tmp_path / "rivet.yaml"

    def write(query: str) -> None:
        config.write_text(
            f"source: {SOURCE}\nexports:\n  - name: orders\n    query: {query}\n    mode: incremental\n"
            "    cursor_column: id\n    destination: out\n"
        )

    write(f"SELECT id FROM {table}")
    _run(config)
    pg.execute(f"INSERT INTO {table} SELECT i, 'n' || i FROM generate_series(301, 320) i")
    write(f"SELECT  id\n      FROM {table} ;")  # layout only: the same export
    _run(config)
    assert _ids(tmp_path / "out") == list(range(1, 321))
    write(f"SELECT id FROM {table} WHERE note IS NOT NULL")  # another query, the same destination
    refused = run_rivet("run", "-c", str(config))
    assert refused.returncode == 2 and "writing to the same destination for another export" in refused.stderr
    assert f"rivet state rebind -c {config} -e orders" in refused.stderr
    pg.execute(f"INSERT INTO {table} SELECT i, 'n' || i FROM generate_series(321, 330) i")
    rebound = run_rivet("state", "rebind", "-c", str(config), "-e", "orders")
    assert rebound.returncode == 0 and "now belongs to the export" in rebound.stderr, rebound.stderr
    ran = run_rivet("run", "-c", str(config), "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["exports"][0]["rows"] == 10, ran.stderr


@pytest.mark.postgres
def test_a_full_export_whose_query_changed_runs_and_keeps_its_history(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 30)")
    config = tmp_path / "rivet.yaml"
    for query in (f"SELECT id FROM {table}", f"SELECT id FROM {table} WHERE id <= 10"):
        config.write_text(f"source: {SOURCE}\nexports:\n  - {{name: orders, query: '{query}', destination: out}}\n")
        _run(config)  # nothing steers a full run: a changed query is simply the export as it is now
    assert _ids(tmp_path / "out") == list(range(1, 11))
    metrics = json.loads(run_rivet("metrics", "-c", str(config), "--json").stdout)["runs"]
    assert [r["rows"] for r in metrics] == [10, 30]


@pytest.mark.postgres
def test_state_from_before_namespaces_is_claimed_by_its_export(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 200)")
    config = _config(tmp_path / "rivet.yaml", table)
    _run(config)
    db = tmp_path / ".rivet_state.db"
    with sqlite3.connect(db) as conn:  # as a store of the previous version left it: every row unclaimed
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%namespace%'"):
            conn.execute(f"UPDATE {name} SET namespace = ''")
        conn.execute("DELETE FROM export_identities")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(201, 250)")
    ran = _run(config)
    assert "now in its namespace auto-" in ran.stderr
    assert _ids(tmp_path / "out") == list(range(1, 251))
    metrics = json.loads(run_rivet("metrics", "-c", str(config), "--json").stdout)["runs"]
    assert [r["rows"] for r in metrics] == [50, 200]


def _plant_lease(db: Path, run_id: str, holder: str, age_s: float) -> None:
    StateStore(db).close()
    with sqlite3.connect(db) as conn:
        now = conn.execute("SELECT (julianday('now') - 2440587.5) * 86400.0").fetchone()[0]
        conn.execute(
            "INSERT INTO leases (namespace, export_name, run_id, holder, acquired_at, heartbeat_at) "
            "VALUES ('', 'orders', ?, ?, '2026-01-01T00:00:00Z', ?)",
            (run_id, holder, now - age_s),
        )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.postgres
def test_a_holder_on_another_host_of_the_same_name_is_not_judged_by_its_pid(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 10)")
    config = _config(tmp_path / "rivet.yaml", table)
    host, dead = holder_id().split(":")[0], _dead_pid()
    # A container sharing this host name: the pid means nothing here, and its heartbeat is fresh.
    _plant_lease(tmp_path / ".rivet_state.db", "orders_20260101T000000.000Z", f"{host}:{dead}:0123456789ab", 0.0)
    staged = tmp_path / "out" / ".rivet-orders_20260101T000000.000Z-0-cafe.tmp"
    staged.parent.mkdir()
    staged.write_bytes(b"a part another live run is writing")
    refused = run_rivet("run", "-c", str(config))
    assert refused.returncode == 1 and "is already running: run orders_20260101T000000.000Z" in refused.stderr
    # Once its heartbeat is older than the lease's life it is taken over, and what it staged stays.
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        conn.execute("UPDATE leases SET heartbeat_at = heartbeat_at - 3600")
    ran = _run(config)
    assert "has not renewed it for 60 s" in ran.stderr
    assert staged.exists() and _ids(tmp_path / "out") == list(range(1, 11))
    # A holder of this process space whose process is gone is taken over at once, its staging removed.
    _plant_lease(tmp_path / ".rivet_state.db", "orders_20260102T000000.000Z", f"{host}:{dead}:{process_space()}", 0)
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        conn.execute("DELETE FROM leases WHERE run_id <> 'orders_20260102T000000.000Z'")
        conn.execute("UPDATE leases SET namespace = (SELECT namespace FROM export_identities)")
    ran = _run(config)
    assert "whose holder is gone" in ran.stderr and not staged.exists()


@pytest.mark.postgres
def test_a_run_whose_lease_was_taken_over_while_it_was_frozen_publishes_nothing(pg, pg_table, pg_state_url, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 100)")
    lake = tmp_path / "lake"
    env = {**os.environ, STATE_URL_VARIABLE: pg_state_url}
    config = _config(tmp_path / "a" / "rivet.yaml", table, destination=str(lake))
    frozen = start_rivet("run", "-c", str(config), env={**env, "RIVET_FAILPOINTS": "before_cursor:stop"})
    try:
        deadline = time.monotonic() + 120
        while not is_stopped(frozen.pid):
            assert frozen.poll() is None and time.monotonic() < deadline, "the run never reached before_cursor"
            time.sleep(0.05)
        # Its heartbeat stops with it; once it is older than the lease's life another machine takes over.
        with psycopg.connect(pg_state_url, autocommit=True) as conn:
            conn.execute("UPDATE rivet_state.leases SET heartbeat_at = heartbeat_at - 3600")
        pg.execute(f"INSERT INTO {table} SELECT generate_series(101, 120)")
        other = _config(tmp_path / "b" / "rivet.yaml", table, destination=str(lake))
        _run(other, {STATE_URL_VARIABLE: pg_state_url})
    finally:
        frozen.send_signal(signal.SIGCONT)
    _, stderr = frozen.communicate(timeout=120)
    assert frozen.returncode == 1 and "lost its lease to another run; nothing was published" in stderr, stderr
    assert _ids(lake) == list(range(1, 121))
    pg.execute(f"INSERT INTO {table} SELECT generate_series(121, 125)")
    _run(config, {STATE_URL_VARIABLE: pg_state_url})
    assert _ids(lake) == list(range(1, 126))


@pytest.mark.postgres
def test_teams_keep_their_state_in_schemas_of_their_own(pg, pg_table, pg_state_url, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 40)")
    lake = tmp_path / "lake"
    config = _config(tmp_path / "rivet.yaml", table, destination=str(lake))
    _run(config, {STATE_URL_VARIABLE: pg_state_url, "RIVET_STATE_SCHEMA": "team_a"})
    # Another team, its own schema: it has no cursor of this export, so it reads every row again.
    other = _config(tmp_path / "b" / "rivet.yaml", table, destination=str(tmp_path / "lake_b"))
    _run(other, {STATE_URL_VARIABLE: f"{pg_state_url}?schema=team_b"})
    with psycopg.connect(pg_state_url, autocommit=True) as conn:
        schemas = {
            r[0]
            for r in conn.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = 'cursors'")
        }
        assert schemas == {"team_a", "team_b"}
        assert conn.execute("SELECT count(*) FROM team_a.cursors").fetchone()[0] == 1
    assert _ids(tmp_path / "lake_b") == list(range(1, 41))
    bad = run_rivet("run", "-c", str(config), env={STATE_URL_VARIABLE: f"{pg_state_url}?schema=Robert');--"})
    assert bad.returncode != 0 and "is not a schema name rivet takes" in bad.stderr
