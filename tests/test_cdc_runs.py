"""``mode: cdc`` through ``rivet run``, on PostgreSQL (a pgoutput slot) and MariaDB (the binary log):
the snapshot and the change rows replay into the live table after every run, a run killed at any
step leaves the next one exact (no change lost, none twice), and a lost log fails loudly.

Each server is a throwaway one with its log on, started from the local binaries.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pymysql
import pytest

from tests.changes import replay
from tests.chunkrun import wait_until
from tests.outputs import (
    assert_failpoint_ended,
    files_with_bytes,
    is_stopped,
    run_rivet,
    start_rivet,
    write_config,
)
from tests.servers import mariadb_server, postgres_cluster

COLUMNS = ["id", "amount", "note", "day"]


@dataclass(frozen=True)
class Capture:
    """A server with its log on: how to reach it, run statements on it and read it."""

    kind: str
    source: dict[str, object]
    schema: str
    execute: Callable[..., None]
    fetch: Callable[[str], list[tuple[Any, ...]]]

    def live(self, table: str) -> list[tuple[Any, ...]]:
        """The table's rows now, by key."""
        return self.fetch(f"SELECT {', '.join(COLUMNS)} FROM {self.schema}.{table} ORDER BY id")


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
    if request.param == "postgres":
        # No autovacuum: its WAL, written whenever it wakes, would make the log's end move between runs.
        # Each test leaves its slot: room for every test of the module.
        settings = {
            "wal_level": "logical",
            "max_wal_senders": "10",
            "max_replication_slots": "100",
            "autovacuum": "off",
        }
        with postgres_cluster(**settings) as cluster:
            with psycopg.connect(cluster.url, autocommit=True) as pg:

                def pg_execute(*statements: str) -> None:
                    for s in statements:
                        pg.execute(s)  # type: ignore[arg-type]

                yield Capture(
                    "postgres",
                    cluster.source,
                    "public",
                    pg_execute,
                    lambda q: pg.execute(q).fetchall(),  # type: ignore[arg-type]
                )
        return
    options = ("--log-bin={root}/data/bin", "--binlog-format=ROW", "--binlog-row-metadata=FULL", "--server-id=1")
    with mariadb_server(options=options) as server:
        my = pymysql.connect(host="127.0.0.1", port=server.port, user="root", database="test", autocommit=True)

        def my_execute(*statements: str) -> None:
            with my.cursor() as cur:
                for s in statements:
                    cur.execute(s)

        def my_fetch(query: str) -> list[tuple[Any, ...]]:
            with my.cursor() as cur:
                cur.execute(query)
                return list(cur.fetchall())

        yield Capture("mariadb", {"type": "mysql", "url": server.url}, "test", my_execute, my_fetch)
        my.close()


@pytest.fixture
def table(capture: Capture, request: pytest.FixtureRequest) -> str:
    """A table of 20 rows, named for the test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[-50:].strip("_")
    return make_table(capture, name)


def make_table(capture: Capture, name: str) -> str:
    """A table ``name`` of 20 rows."""
    capture.execute(
        f"DROP TABLE IF EXISTS {capture.schema}.{name}",
        f"CREATE TABLE {capture.schema}.{name} (id INT PRIMARY KEY, amount NUMERIC(12,2), note VARCHAR(40), day DATE)",
        f"INSERT INTO {capture.schema}.{name} (id, amount, note, day) VALUES "
        + ", ".join(f"({i}, {i}.25, 'row {i}', '2024-01-{i:02d}')" for i in range(1, 21)),
    )
    return name


def config_for(capture: Capture, table: str, home: Path, on_schema_drift: str = "warn", **cdc: object) -> Path:
    export = {
        "name": table,
        "table": f"{capture.schema}.{table}",
        "mode": "cdc",
        "cdc": {"initial": "snapshot", **cdc},
        "destination": str(home / "out"),
        "on_schema_drift": on_schema_drift,
    }
    return write_config(home, capture.source, [export])


def parts(folder: Path) -> list[dict[str, Any]]:
    """The rows of the parts the folder's manifest lists; the folder holds no other data file."""
    listed = [p["name"] for p in json.loads((folder / "manifest.json").read_text())["parts"]]
    assert (folder / "_SUCCESS").exists()
    assert sorted(listed) == sorted(p.name for p in folder.glob("*.parquet"))
    return [row for name in listed for row in pq.read_table(folder / name).to_pylist()]


def replayed(out: Path) -> list[tuple[Any, ...]]:
    """The snapshot with every change applied in ``(__pos, __seq)`` order, each change checked to be there once."""
    changes = sorted(parts(out), key=lambda r: (r["__pos"], r["__seq"]))
    order = [(r["__pos"], r["__seq"]) for r in changes]
    assert len(set(order)) == len(order), "a change was published twice"
    start = {r["id"]: r for r in parts(out / "snapshot")}
    table = replay(changes, start=start)
    return [tuple(table[k][c] for c in COLUMNS) for k in sorted(table)]


def change(capture: Capture, table: str, step: int) -> None:
    """A round of changes: each leaves a trace in the table, so a lost or doubled one shows."""
    t = f"{capture.schema}.{table}"
    base = 100 * step
    capture.execute(
        f"INSERT INTO {t} (id, amount, note, day) VALUES ({base}, -1.50, 'new {step}', '2025-02-28')",
        f"UPDATE {t} SET amount = amount + 1, note = 'touched {step}' WHERE id = {step}",
        # One transaction: a key updated twice, and a row that lives and dies inside it.
        "BEGIN",
        f"UPDATE {t} SET amount = amount * 2 WHERE id = {step + 5}",
        f"UPDATE {t} SET note = NULL WHERE id = {step + 5}",
        f"INSERT INTO {t} (id, amount, note, day) VALUES ({base + 1}, 0, 'gone', NULL)",
        f"DELETE FROM {t} WHERE id = {base + 1}",
        "COMMIT",
        f"DELETE FROM {t} WHERE id = {step + 10}",
        # The key itself moves.
        f"UPDATE {t} SET id = {base + 2} WHERE id = {step + 15}",
    )


def test_the_snapshot_and_the_changes_replay_into_the_live_table_after_every_run(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path)
    for step in range(1, 4):
        done = run_rivet("run", "-c", str(config))
        assert done.returncode == 0, done.stderr
        assert replayed(tmp_path / "out") == capture.live(table)
        change(capture, table, step)
    done = run_rivet("run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert replayed(tmp_path / "out") == capture.live(table)
    changes = parts(tmp_path / "out")
    # Three rounds of nine changes; the moved key is a delete then an update; values exact.
    assert len(changes) == 3 * 9
    first = next(r for r in changes if r["id"] == 100)
    assert (first["__op"], first["amount"], first["note"]) == ("insert", Decimal("-1.50"), "new 1")
    checked = run_rivet("validate", "-c", str(config))
    assert checked.returncode == 0 and "(snapshot): 1 part(s), 20 rows" in checked.stdout + checked.stderr
    shown = run_rivet("state", "show", "-c", str(config), "--json")
    position = json.loads(shown.stdout)["exports"][0]
    assert position["position"] and position["anchor"].startswith(("slot", "server_id"))


# Each step of a run where a kill leaves something to recover: the points of the first run (which
# publishes the snapshot, @1, then the changes, @2) and of a later one (the changes only).
FIRST_RUN_POINTS = [
    "after_anchor_recorded",
    "after_anchor",
    "before_manifest@1",
    "before_cursor@1",
    "before_success@1",
    "after_part_write",
    "before_manifest@2",
    "before_cursor@2",
    "before_success@2",
    "before_confirm",
]


@pytest.mark.parametrize("point", FIRST_RUN_POINTS)
def test_a_run_killed_at_any_step_leaves_the_next_exact(capture, table, tmp_path, point):
    config = config_for(capture, table, tmp_path)
    kill_then_finish(capture, table, config, point, step=1)
    name = point.partition("@")[0]
    if not name.startswith("after_anchor"):
        # The same step of a run that publishes changes only.
        kill_then_finish(capture, table, config, name, step=3)


def kill_then_finish(capture: Capture, table: str, config: Path, point: str, step: int) -> None:
    """Changes, a run killed at ``point``, more changes, a whole run: the output is the live table."""

    def exact() -> None:
        assert replayed(config.parent / "out") == capture.live(table)

    killed_then_run(config, point, step, lambda step: change(capture, table, step), exact)


def killed_then_run(
    config: Path, point: str, step: int, make_changes: Callable[[int], None], check: Callable[[], None]
) -> None:
    """Changes, a run killed at ``point``, more changes, then a whole run, after which ``check`` holds."""
    make_changes(step)
    killed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": f"{point}:crash"})
    assert_failpoint_ended(killed, point, -signal.SIGKILL)
    make_changes(step + 1)
    done = run_rivet("run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    check()


def test_a_change_made_while_the_snapshot_is_taken_is_a_change_not_part_of_the_snapshot(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path)
    with start_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": "after_anchor:stop"}) as run:
        assert run.stderr is not None
        wait_until(lambda: is_stopped(run.pid), "the run stops at its anchor", run)
        # Anchored, the snapshot not read yet: these changes belong to the stream.
        change(capture, table, 1)
        run.send_signal(signal.SIGCONT)
        said = run.stderr.read()
        assert run.wait() == 0 and "failpoint after_anchor fired" in said, said
    snapshot = {r["id"]: r for r in parts(tmp_path / "out" / "snapshot")}
    assert sorted(snapshot) == list(range(1, 21)) and snapshot[1]["note"] == "row 1"
    assert {r["id"] for r in parts(tmp_path / "out")} >= {100, 1, 6, 11, 16, 102}
    assert replayed(tmp_path / "out") == capture.live(table)


def lose_log(capture: Capture, table: str) -> str:
    """Take away the log the export's position needs; what the error then names."""
    if capture.kind == "postgres":
        slot = f"rivet_{table}"
        capture.execute(f"SELECT pg_drop_replication_slot('{slot}')")
        return slot
    capture.execute("FLUSH BINARY LOGS")
    newest = capture.fetch("SHOW BINARY LOGS")[-1][0]

    def purged() -> bool:
        # The server keeps a file until its commits' checkpoint passes it: purge until it is gone.
        capture.execute(f"PURGE BINARY LOGS TO '{newest}'")
        return len(capture.fetch("SHOW BINARY LOGS")) == 1

    wait_until(purged, "the server purges its older binary logs")
    return "purged"


def test_a_lost_log_fails_loudly_and_publishes_nothing(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    change(capture, table, 1)
    named = lose_log(capture, table)
    before = files_with_bytes(tmp_path / "out")
    failed = run_rivet("run", "-c", str(config))
    assert failed.returncode == 1 and named in failed.stderr and "initial: snapshot" in failed.stderr
    assert files_with_bytes(tmp_path / "out") == before
    # Never a silent new anchor: the next run fails the same way.
    assert run_rivet("run", "-c", str(config)).returncode == 1


def test_cdc_drop_removes_the_slot_and_the_next_run_snapshots_again(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    dropped = run_rivet("cdc", "drop", "-c", str(config), "-e", table, "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert "forgot its position" in dropped.stderr
    if capture.kind == "postgres":
        assert f"dropped slot rivet_{table}" in dropped.stderr
        assert not capture.fetch(f"SELECT 1 FROM pg_replication_slots WHERE slot_name = 'rivet_{table}'")
    change(capture, table, 1)
    done = run_rivet("run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "snapshot of 20 row(s)" in done.stderr
    snapshot = sorted((r["id"], r["note"]) for r in parts(tmp_path / "out" / "snapshot"))
    assert snapshot == [(r[0], r[2]) for r in capture.live(table)]


def test_a_position_file_of_the_original_tool_is_not_skipped_silently(capture, table, tmp_path):
    (tmp_path / "orders.ckpt").write_text('{"file": "binlog.000046", "pos": 681}')
    config = config_for(capture, table, tmp_path, checkpoint=str(tmp_path / "orders.ckpt"), initial="none")
    refused = run_rivet("run", "-c", str(config))
    assert refused.returncode == 2 and "holds a position of the original rivet" in refused.stderr
    assert not (tmp_path / "out").exists()
    if capture.kind == "postgres":
        assert not capture.fetch(f"SELECT 1 FROM pg_replication_slots WHERE slot_name = 'rivet_{table}'")


def add_column_between_changes(capture: Capture, table: str) -> None:
    """A change logged before a column is added (in the middle where the server can), and one after."""
    t = f"{capture.schema}.{table}"
    where = "" if capture.kind == "postgres" else " AFTER amount"  # PostgreSQL adds columns at the end
    capture.execute(f"UPDATE {t} SET note = 'before' WHERE id = 1", f"ALTER TABLE {t} ADD COLUMN extra INT{where}")
    capture.execute(f"UPDATE {t} SET extra = 7 WHERE id = 2", f"DELETE FROM {t} WHERE id = 3")


def test_a_column_added_mid_stream_is_followed_by_name(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    add_column_between_changes(capture, table)
    done = run_rivet("run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "extra not in them (NULL, and named in __unchanged)" in done.stderr
    rows = sorted(parts(tmp_path / "out"), key=lambda r: (r["__pos"], r["__seq"]))
    logged_before = rows[0]
    assert (logged_before["id"], logged_before["note"], logged_before["extra"]) == (1, "before", None)
    assert "extra" in logged_before["__unchanged"]  # not a NULL: the change did not carry it
    assert [(r["__op"], r["id"], r["extra"]) for r in rows[1:]] == [("update", 2, 7), ("delete", 3, None)]
    assert replayed(tmp_path / "out") == capture.live(table)
    assert [r["extra"] for r in parts(tmp_path / "out") if r["id"] == 2] == [7]


def test_a_column_change_stops_the_export_under_fail_until_it_starts_over(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path, on_schema_drift="fail")
    assert run_rivet("run", "-c", str(config)).returncode == 0
    add_column_between_changes(capture, table)
    t = f"{capture.schema}.{table}"
    before = files_with_bytes(tmp_path / "out")
    for _ in range(2):  # the position does not move: every run says the same
        stopped = run_rivet("run", "-c", str(config))
        assert stopped.returncode == 4, stopped.stderr
        assert "on_schema_drift: fail" in stopped.stderr
        assert files_with_bytes(tmp_path / "out") == before
    # The way out it names: a new anchor and snapshot, into a folder of the new schema.
    assert run_rivet("cdc", "drop", "-c", str(config), "-e", table, "--yes").returncode == 0
    (tmp_path / "out").rename(tmp_path / "out.before")
    done = run_rivet("run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    capture.execute(f"UPDATE {t} SET extra = 8 WHERE id = 4")
    assert run_rivet("run", "-c", str(config)).returncode == 0
    assert [(r["id"], r["extra"]) for r in parts(tmp_path / "out")] == [(4, 8)]
    assert replayed(tmp_path / "out") == capture.live(table)


def test_a_column_whose_type_changed_under_unread_changes_stops_the_export(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    t = f"{capture.schema}.{table}"
    retype = f"ALTER TABLE {t} " + ("ALTER COLUMN id TYPE BIGINT" if capture.kind == "postgres" else "MODIFY id BIGINT")
    # Logged as an INT: its bytes read as a BIGINT would be another number.
    capture.execute(f"UPDATE {t} SET note = 'before' WHERE id = 1", retype)
    before = files_with_bytes(tmp_path / "out")
    stopped = run_rivet("run", "-c", str(config))
    assert stopped.returncode == 4, stopped.stderr
    assert "column id of" in stopped.stderr and "changed type after these changes were logged" in stopped.stderr
    assert "Start over from a snapshot" in stopped.stderr and "Set on_schema_drift" not in stopped.stderr
    assert files_with_bytes(tmp_path / "out") == before


def test_a_binlog_that_does_not_name_its_columns_cannot_follow_a_column_change(capture, table, tmp_path):
    if capture.kind == "postgres":
        pytest.skip("pgoutput always names the columns")
    config = config_for(capture, table, tmp_path)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    capture.execute("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
    try:
        add_column_between_changes(capture, table)
    finally:
        capture.execute("SET GLOBAL binlog_row_metadata = 'FULL'")
    stopped = run_rivet("run", "-c", str(config))
    assert stopped.returncode == 4, stopped.stderr
    assert "binlog_row_metadata=FULL" in stopped.stderr
    assert [p for p in (tmp_path / "out").glob("*.parquet")] == []


def test_a_truncated_table_fails_the_run_loudly_and_publishes_nothing(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    before = files_with_bytes(tmp_path / "out")
    # Unqualified, in the server's default database: the statement names the table as users write it.
    capture.execute(f"UPDATE {capture.schema}.{table} SET note = 'kept' WHERE id = 1", f"TRUNCATE TABLE {table}")
    for _ in range(2):  # the position does not move past it
        failed = run_rivet("run", "-c", str(config))
        assert failed.returncode == 1, failed.stderr
        assert f"{capture.schema}.{table} was truncated" in failed.stderr and "export it whole again" in failed.stderr
        assert files_with_bytes(tmp_path / "out") == before


def test_a_server_that_does_not_log_whole_rows_is_refused_by_name(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path)
    if capture.kind == "postgres":
        with postgres_cluster() as plain:  # wal_level replica, the default
            with psycopg.connect(plain.url, autocommit=True) as pg:
                pg.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY)")  # type: ignore[arg-type]
            export = {"name": table, "table": f"public.{table}", "mode": "cdc", "destination": str(tmp_path / "out")}
            config = write_config(tmp_path, plain.source, [export])
            refused, doctor = run_rivet("run", "-c", str(config)), run_rivet("doctor", "-c", str(config))
        expected = "mode: cdc needs wal_level = logical on the server (it is replica)"
    else:
        capture.execute("SET GLOBAL binlog_format = 'MIXED'")
        try:
            refused, doctor = run_rivet("run", "-c", str(config)), run_rivet("doctor", "-c", str(config))
        finally:
            capture.execute("SET GLOBAL binlog_format = 'ROW'")
        expected = "binlog_format is MIXED, not ROW"
    assert refused.returncode == 1 and expected in refused.stderr, refused.stderr
    # rivet doctor says it before any run.
    assert doctor.returncode == 1 and expected in doctor.stdout + doctor.stderr
    ready = run_rivet("doctor", "-c", str(config_for(capture, table, tmp_path)))
    said = "wal_level is logical" if capture.kind == "postgres" else "the binary log is on, in ROW format"
    assert said in ready.stdout + ready.stderr
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def tables_config(capture: Capture, tables: list[str], home: Path) -> Path:
    """One export capturing ``tables`` through one stream, each into its own folder."""
    export = {
        "name": "app",
        "tables": [f"{capture.schema}.{t}" for t in tables],
        "mode": "cdc",
        "cdc": {"initial": "snapshot", "slot": tables[0][:40] + "_all"},
        "destination": str(home / "out"),
    }
    return write_config(home, capture.source, [export])


def both_tables(capture: Capture, table: str) -> list[str]:
    """``table`` and a second table beside it."""
    return [table, make_table(capture, table[:50] + "_b")]


def change_both(capture: Capture, tables: list[str], step: int) -> None:
    """A round of changes in each table, and one transaction that changes both."""
    for t in tables:
        change(capture, t, step)
    first, second = (f"{capture.schema}.{t}" for t in tables)
    capture.execute(
        "BEGIN",
        f"UPDATE {first} SET note = 'together {step}' WHERE id = {step + 1}",
        f"DELETE FROM {second} WHERE id = {step + 2}",
        "COMMIT",
    )


def assert_each_table_replays(capture: Capture, tables: list[str], out: Path) -> None:
    for t in tables:
        assert replayed(out / f"{capture.schema}.{t}") == capture.live(t), t


def test_tables_are_read_in_one_stream_each_into_its_own_folder(capture, table, tmp_path):
    tables = both_tables(capture, table)
    config = tables_config(capture, tables, tmp_path)
    for step in range(1, 3):
        done = run_rivet("run", "-c", str(config))
        assert done.returncode == 0, done.stderr
        assert_each_table_replays(capture, tables, tmp_path / "out")
        change_both(capture, tables, step)
    done = run_rivet("run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert_each_table_replays(capture, tables, tmp_path / "out")
    first, second = (parts(tmp_path / "out" / f"{capture.schema}.{t}") for t in tables)
    assert len(first) == 2 * 10 and len(second) == 2 * 10  # nine changes a round, and the shared transaction's
    together = [r for r in first if r["note"] and r["note"].startswith("together")]
    gone = [r for r in second if r["__op"] == "delete" and r["id"] in (3, 4)]
    assert [r["__pos"] for r in together] == [r["__pos"] for r in gone]  # one transaction, one position
    if capture.kind == "postgres":
        slots = capture.fetch("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 't_%_all'")
        assert len(slots) == 1
    shown = json.loads(run_rivet("state", "show", "-c", str(config), "--json").stdout)
    assert shown["exports"][0]["position"]
    checked = run_rivet("validate", "-c", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for t in tables:  # each table's folder and its snapshot
        assert f"app.{capture.schema}.{t} (snapshot): 1 part(s), 20 rows" in checked.stdout + checked.stderr
        assert f"app.{capture.schema}.{t}: 2 part(s), 20 rows" in checked.stdout + checked.stderr
    assert "change capture at" in run_rivet("metrics", "-c", str(config)).stdout
    checked = run_rivet("check", "-c", str(config))
    assert checked.returncode == 0, checked.stderr
    for t in tables:  # each table is described, not only the first
        assert f"app.{capture.schema}.{t}: 4 columns, all exact" in checked.stdout + checked.stderr


# Kills between the two tables' commits (the second table's, @2), and around them.
TABLES_POINTS = ["before_cursor@2", "before_success@1", "after_part_write", "before_confirm"]


@pytest.mark.parametrize("point", TABLES_POINTS)
def test_a_run_of_tables_killed_between_their_commits_publishes_each_change_once(capture, table, tmp_path, point):
    tables = both_tables(capture, table)
    config = tables_config(capture, tables, tmp_path)
    for step in (1, 3):  # the first run (snapshots, then changes), then one of changes only
        killed_then_run(
            config, point, step, lambda step: change_both(capture, tables, step),
            lambda: assert_each_table_replays(capture, tables, tmp_path / "out"),
        )  # fmt: skip


def test_a_table_that_joins_tables_after_the_stream_began_is_refused_by_name(capture, table, tmp_path):
    tables = both_tables(capture, table)
    assert run_rivet("run", "-c", str(tables_config(capture, tables[:1], tmp_path))).returncode == 0
    grown = tables_config(capture, tables, tmp_path)
    refused = run_rivet("run", "-c", str(grown))
    assert refused.returncode == 2, refused.stderr
    assert f"table {capture.schema}.{tables[1]} has no position" in refused.stderr
    assert not (tmp_path / "out" / f"{capture.schema}.{tables[1]}").exists()
    # The way out it names: the whole stream over, from new snapshots of every table.
    dropped = run_rivet("cdc", "drop", "-c", str(grown), "-e", "app", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    change_both(capture, tables, 1)
    done = run_rivet("run", "-c", str(grown))
    assert done.returncode == 0, done.stderr
    assert_each_table_replays(capture, tables, tmp_path / "out")


def test_a_table_that_left_tables_and_came_back_is_refused_by_name(capture, table, tmp_path):
    tables = both_tables(capture, table)
    assert run_rivet("run", "-c", str(tables_config(capture, tables, tmp_path))).returncode == 0
    change_both(capture, tables, 1)
    # The stream goes on without the second table...
    alone = run_rivet("run", "-c", str(tables_config(capture, tables[:1], tmp_path)))
    assert alone.returncode == 0, alone.stderr
    second = tmp_path / "out" / f"{capture.schema}.{tables[1]}"
    before = files_with_bytes(second)
    change_both(capture, tables, 2)
    # ...which then comes back: its changes in between are gone from the stream.
    refused = run_rivet("run", "-c", str(tables_config(capture, tables, tmp_path)))
    assert refused.returncode == 2, refused.stderr
    assert f"table {capture.schema}.{tables[1]} was last published at" in refused.stderr
    assert "left tables: and came back" in refused.stderr
    assert files_with_bytes(second) == before


def test_column_overrides_read_the_changes_as_they_read_the_snapshot(capture, tmp_path):
    t = f"{capture.schema}.numbers"
    unconstrained = "NUMERIC" if capture.kind == "postgres" else "DECIMAL(30,10)"
    capture.execute(f"DROP TABLE IF EXISTS {t}", f"CREATE TABLE {t} (id INT PRIMARY KEY, total {unconstrained})",
                    f"INSERT INTO {t} VALUES (1, 1.5)")  # fmt: skip
    export = {"name": "numbers", "table": t, "mode": "cdc", "cdc": {"initial": "snapshot"},
              "columns": {"total": "decimal(20,4)"}, "destination": str(tmp_path / "out")}  # fmt: skip
    config = write_config(tmp_path, capture.source, [export])
    first = run_rivet("run", "-c", str(config))
    if capture.kind != "postgres":
        # The binary log carries each value in its column's own type: an override would read the
        # snapshot otherwise than the changes.
        assert first.returncode == 2 and "cannot be applied to change capture" in first.stderr
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))
        return
    assert first.returncode == 0, first.stderr
    capture.execute(f"UPDATE {t} SET total = 2.25 WHERE id = 1")
    assert run_rivet("run", "-c", str(config)).returncode == 0
    snapshot, changes = parts(tmp_path / "out" / "snapshot"), parts(tmp_path / "out")
    assert [r["total"] for r in snapshot] == [Decimal("1.5000")] and [r["total"] for r in changes] == [
        Decimal("2.2500")
    ]
    types = {pq.read_schema(p).field("total").type for p in (tmp_path / "out").rglob("*.parquet")}
    assert types == {pa.decimal128(20, 4)}
    text = {**export, "columns": {"total": "text"}, "destination": str(tmp_path / "text")}
    refused = run_rivet("run", "-c", str(write_config(tmp_path, capture.source, [text])))
    assert refused.returncode == 2 and "cannot be applied to change capture" in refused.stderr


def merged_rows(home: Path, fmt: str, export: str) -> list[dict[str, Any]]:
    """The rows of the merged table at ``home/out``, read by its own library."""
    if fmt == "delta":
        from deltalake import DeltaTable

        return list(DeltaTable(str(home / "out")).to_pyarrow_table().to_pylist())
    from rivet.output.tables.iceberg import IcebergFormat, IcebergTable
    from rivet.storage.destinations import DestinationSpec

    table = IcebergFormat(IcebergTable.from_config(None, export, home))
    return list(table.read(DestinationSpec(str(home / "out")), None).to_pylist())


def merged_table(home: Path, fmt: str, export: str) -> list[tuple[Any, ...]]:
    """The merged table, as rows by key."""
    return sorted(tuple(r[c] for c in COLUMNS) for r in merged_rows(home, fmt, export))


def merge_config(capture: Capture, table: str, home: Path, fmt: str = "delta", **cdc: object) -> Path:
    export = {
        "name": table,
        "table": f"{capture.schema}.{table}",
        "mode": "cdc",
        "format": fmt,
        "write": "merge",
        "cdc": {"initial": "snapshot", **cdc},
        "destination": str(home / "out"),
    }
    return write_config(home, capture.source, [export])


def merge_runs(home: Path, fmt: str, export: str) -> list[tuple[str, str, str]]:
    """``(run, from, position)`` of each merge committed to the table, oldest first."""
    if fmt == "delta":
        from deltalake import DeltaTable

        summaries = list(reversed(DeltaTable(str(home / "out")).history()))
    else:
        from rivet.output.tables.iceberg import IcebergFormat, IcebergTable
        from rivet.storage.destinations import DestinationSpec

        found = IcebergFormat(IcebergTable.from_config(None, export, home)).open(
            DestinationSpec(str(home / "out")), None
        )
        summaries = [dict(s.summary.additional_properties) for s in found.snapshots()]
    runs: list[tuple[str, str, str]] = []
    for c in summaries:
        # An Iceberg merge is two snapshots (a delete, then an upsert) of one run and start.
        if "rivet.position" in c and (not runs or runs[-1][:2] != (c["rivet.run_id"], c["rivet.from"])):
            runs.append((c["rivet.run_id"], c["rivet.from"], c["rivet.position"]))
    return runs


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_a_merged_table_is_the_live_table_after_every_run(capture, table, tmp_path, fmt):
    config = merge_config(capture, table, tmp_path, fmt)
    for step in range(1, 4):
        done = run_rivet("run", "-c", str(config))
        assert done.returncode == 0, done.stderr
        assert merged_table(tmp_path, fmt, table) == capture.live(table)
        change(capture, table, step)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    assert merged_table(tmp_path, fmt, table) == capture.live(table)
    runs = merge_runs(tmp_path, fmt, table)
    # The snapshot, then one merge per run that had changes, each starting where the last ended.
    assert [r[1] for r in runs[1:]] == [r[2] for r in runs[:-1]]
    assert len(runs) == 4
    # A run with nothing new makes no commit.
    assert run_rivet("run", "-c", str(config)).returncode == 0
    assert len(merge_runs(tmp_path, fmt, table)) == 4


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_a_backlog_is_merged_in_commits_and_a_run_killed_between_them_goes_on(capture, table, tmp_path, fmt):
    config = merge_config(capture, table, tmp_path, fmt, commit_every_rows=4)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    for step in range(1, 4):
        change(capture, table, step)
    # Killed after its second merge reached the table, before that merge's state commit.
    killed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": "before_cursor@2:crash"})
    assert_failpoint_ended(killed, "before_cursor", -signal.SIGKILL)
    assert len(merge_runs(tmp_path, fmt, table)) == 3  # the snapshot, and two merges of the run
    done = run_rivet("run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert merged_table(tmp_path, fmt, table) == capture.live(table)
    runs = merge_runs(tmp_path, fmt, table)
    # Each merge starts where the one before ended: no change merged twice, none skipped.
    assert [r[1] for r in runs[1:]] == [r[2] for r in runs[:-1]]
    assert len(runs) > 4 and len({r[0] for r in runs[1:]}) == 2


def test_a_merge_stops_at_a_column_change_and_merges_nothing(capture, table, tmp_path):
    config = merge_config(capture, table, tmp_path)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    before = merged_table(tmp_path, "delta", table)
    add_column_between_changes(capture, table)
    stopped = run_rivet("run", "-c", str(config))
    assert stopped.returncode == 4, stopped.stderr
    assert "write: merge does not follow a change of columns" in stopped.stderr
    assert merged_table(tmp_path, "delta", table) == before
    assert len(merge_runs(tmp_path, "delta", table)) == 1


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
@pytest.mark.parametrize("point", ["after_anchor", "before_cursor@1", "before_cursor@2"])
def test_a_merge_killed_after_its_commit_is_not_merged_again(capture, table, tmp_path, point, fmt):
    config = merge_config(capture, table, tmp_path, fmt)
    if point == "before_cursor@2":
        assert run_rivet("run", "-c", str(config)).returncode == 0
        point = "before_cursor"
    change(capture, table, 1)
    killed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": f"{point}:crash"})
    assert_failpoint_ended(killed, point, -signal.SIGKILL)
    change(capture, table, 2)
    done = run_rivet("run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert merged_table(tmp_path, fmt, table) == capture.live(table)
    merges = [start for _, start, _ in merge_runs(tmp_path, fmt, table) if start]
    assert len(merges) == len(set(merges)), "the same changes were merged twice"


def test_a_value_postgresql_did_not_log_keeps_its_value_in_the_merged_table(capture, tmp_path):
    if capture.kind != "postgres":
        pytest.skip("only PostgreSQL leaves TOASTed values out of its log")
    capture.execute(
        "DROP TABLE IF EXISTS public.toasted",
        "CREATE TABLE public.toasted (id INT PRIMARY KEY, n INT, big TEXT)",
        "ALTER TABLE public.toasted ALTER COLUMN big SET STORAGE EXTERNAL",
        "INSERT INTO public.toasted SELECT i, i, repeat(chr(96 + i), 5000) FROM generate_series(1, 3) AS i",
    )
    export = {"name": "toasted", "table": "public.toasted", "mode": "cdc", "format": "delta", "write": "merge",
              "cdc": {"initial": "snapshot"}, "destination": str(tmp_path / "out")}  # fmt: skip
    config = write_config(tmp_path, capture.source, [export])
    assert run_rivet("run", "-c", str(config)).returncode == 0
    capture.execute(
        "UPDATE public.toasted SET n = 10 WHERE id = 1",  # big not logged: the table's value stays
        "UPDATE public.toasted SET big = repeat('z', 6000) WHERE id = 2",
        "UPDATE public.toasted SET n = 20 WHERE id = 2",  # big not logged: the run's earlier change has it
    )
    done = run_rivet("run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    from deltalake import DeltaTable

    merged = sorted(DeltaTable(str(tmp_path / "out")).to_pyarrow_table().to_pylist(), key=lambda r: r["id"])
    live = capture.fetch("SELECT id, n, big FROM public.toasted ORDER BY id")
    assert [(r["id"], r["n"], r["big"]) for r in merged] == live


def test_a_table_without_a_primary_key_merges_by_the_keys_named(capture, tmp_path):
    capture.execute(
        f"DROP TABLE IF EXISTS {capture.schema}.keyless",
        f"CREATE TABLE {capture.schema}.keyless (code VARCHAR(10) NOT NULL, n INT)",
        f"INSERT INTO {capture.schema}.keyless VALUES ('a', 1), ('b', 2)",
    )
    if capture.kind == "postgres":  # without a key, PostgreSQL logs updates only under FULL
        capture.execute("ALTER TABLE public.keyless REPLICA IDENTITY FULL")
    export = {"name": "keyless", "table": f"{capture.schema}.keyless", "mode": "cdc", "format": "delta",
              "write": "merge", "cdc": {"initial": "snapshot"}, "destination": str(tmp_path / "out")}  # fmt: skip
    refused = run_rivet("run", "-c", str(write_config(tmp_path, capture.source, [export])))
    assert refused.returncode == 2 and "has no primary key: name the columns in merge_keys" in refused.stderr
    config = write_config(tmp_path, capture.source, [{**export, "merge_keys": ["code"]}])
    assert run_rivet("run", "-c", str(config)).returncode == 0
    capture.execute(
        f"UPDATE {capture.schema}.keyless SET n = 20 WHERE code = 'b'",
        f"DELETE FROM {capture.schema}.keyless WHERE code = 'a'",
        f"INSERT INTO {capture.schema}.keyless VALUES ('c', 3)",
    )
    assert run_rivet("run", "-c", str(config)).returncode == 0
    from deltalake import DeltaTable

    merged = sorted((r["code"], r["n"]) for r in DeltaTable(str(tmp_path / "out")).to_pyarrow_table().to_pylist())
    assert merged == sorted(capture.fetch(f"SELECT code, n FROM {capture.schema}.keyless"))


def test_each_run_says_how_far_behind_the_log_it_starts_and_warns_past_the_limit(capture, table, tmp_path):
    config = config_for(capture, table, tmp_path, max_lag_bytes="1KB")
    assert run_rivet("run", "-c", str(config)).returncode == 0
    for step in range(1, 4):
        change(capture, table, step)
    behind = run_rivet("run", "-c", str(config))
    assert behind.returncode == 0 and "bytes of log behind (cdc.max_lag_bytes 1024)" in behind.stderr
    journal = run_rivet("journal", "-c", str(config), "-e", table, "--json")
    events = json.loads(journal.stdout)["runs"][0]["events"]
    lag = [e for e in events if e["type"] == "cdc_lag"]
    assert len(lag) == 1 and lag[0]["bytes_behind"] > 1024
    assert any(e["type"] == "warning" and "behind" in e["message"] for e in events)
    # rivet metrics says how far behind the export is, from the state store alone.
    (lagging,) = json.loads(run_rivet("metrics", "-c", str(config), "--json").stdout)["changes"]
    assert lagging["bytes_behind_at_start"] == lag[0]["bytes_behind"]
    assert lagging["position"] and lagging["position"] != lag[0]["position"]  # where it ended, past its start
    caught_up = run_rivet("run", "-c", str(config))
    assert caught_up.returncode == 0 and "behind" not in caught_up.stderr
    metrics = run_rivet("metrics", "-c", str(config), "--json")
    (now,) = json.loads(metrics.stdout)["changes"]
    last = json.loads(metrics.stdout)["runs"][0]
    assert now["current_as_of"] == last["started_at"] and now["seconds_behind"] >= 0
    assert now["bytes_behind_at_start"] < lag[0]["bytes_behind"]
    shown = run_rivet("metrics", "-c", str(config)).stdout
    assert f"change capture at {now['position']}: current as of {now['current_as_of']}" in shown
    scraped = run_rivet("metrics", "-c", str(config), "--format", "prometheus").stdout
    assert f'rivet_cdc_lag_bytes{{export="{table}",mode="cdc"' in scraped
    assert f'rivet_cdc_lag_seconds{{export="{table}"' in scraped


def test_a_position_forged_in_the_state_store_is_refused_not_sent(capture, table, tmp_path):
    import sqlite3

    config = config_for(capture, table, tmp_path)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    change(capture, table, 1)
    before = files_with_bytes(tmp_path / "out")
    with sqlite3.connect(tmp_path / ".rivet_state.db") as state:
        state.execute("UPDATE change_positions SET position = ?", ("0/0'; DROP TABLE x; --",))
    refused = run_rivet("run", "-c", str(config))
    assert refused.returncode != 0 and "is not a" in refused.stderr and "position" in refused.stderr, refused.stderr
    assert files_with_bytes(tmp_path / "out") == before


def test_follow_runs_again_until_it_is_stopped_and_publishes_each_change_once(capture, table, tmp_path):
    import sqlite3

    config = config_for(capture, table, tmp_path, commit_every_s=1)  # the pace, as --every would set it
    state = tmp_path / ".rivet_state.db"

    def anchored() -> bool:
        if not state.exists():
            return False
        with sqlite3.connect(state) as db:
            try:
                return bool(db.execute("SELECT 1 FROM change_positions WHERE phase = 'streaming'").fetchall())
            except sqlite3.OperationalError:  # the store is being made
                return False

    def published_changes() -> int:
        try:
            return len(parts(tmp_path / "out"))
        except (OSError, ValueError, AssertionError):  # not there yet, or between two files of a run
            return 0

    def follow(*extra: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
        with start_rivet("run", "-c", str(config), "--follow", *extra, stdout=subprocess.DEVNULL) as run:
            said: list[str] = []
            reader = threading.Thread(target=lambda: said.extend(run.stderr or []), daemon=True)
            reader.start()
            yield run, said
            run.send_signal(signal.SIGTERM)
            run.wait()
            reader.join()

    with contextmanager(follow)() as (run, said):
        wait_until(anchored, "the first run anchors", run)
        change(capture, table, 1)
        wait_until(lambda: published_changes() == 9, "a later run publishes the changes", run)
        change(capture, table, 2)
        wait_until(lambda: published_changes() == 18, "a later run publishes the next changes", run)
    # Stopped anywhere: between runs it exits 0, inside one (130) that run publishes nothing of its own.
    assert run.returncode in (0, 130), "".join(said)
    # Stopped while it rests between two runs (it says so as it starts to rest): it exits 0.
    with contextmanager(follow)("--every", "3600") as (run, said):
        wait_until(lambda: any(line.startswith("next run in") for line in said), "it rests after a run", run)
    assert run.returncode == 0 and "stopped between runs" in "".join(said), "".join(said)
    change(capture, table, 3)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    assert replayed(tmp_path / "out") == capture.live(table)


def test_follow_refuses_an_export_it_would_read_again_each_time(tmp_path):
    config = write_config(
        tmp_path,
        {"type": "postgres", "url": "postgresql://u@127.0.0.1:1/db"},
        [{"name": "orders", "table": "public.orders", "destination": str(tmp_path / "out")}],
    )
    refused = run_rivet("run", "-c", str(config), "--follow")
    assert refused.returncode == 2 and "--follow runs mode: cdc exports only; orders" in refused.stderr
    assert run_rivet("run", "-c", str(config), "--follow", "--json").returncode == 2
