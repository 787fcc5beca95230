"""PostgreSQL logical replication through rivet's own client: a pgoutput slot streams what was done,
value for value, and a confirmed position moves the slot. Runs against a throwaway cluster with
``wal_level=logical`` started from the local binaries."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from rivet._native import PgReplication
from rivet.config.tuning import resolve_tuning
from rivet.errors import ConfigError, RivetError
from rivet.sources.base import scan_options
from rivet.sources.postgres.source import PostgresSource
from tests.changes import assert_changes_of_c, replay
from tests.servers import PostgresCluster, postgres_cluster

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def logical() -> Iterator[PostgresCluster]:
    with postgres_cluster(wal_level="logical", max_wal_senders="4", max_replication_slots="4") as cluster:
        yield cluster


def connect(cluster: PostgresCluster) -> PgReplication:
    return PgReplication(PostgresSource(url=cluster.url).connect_args())


def lsn(text: str) -> int:
    high, low = text.split("/")
    return int(high, 16) << 32 | int(low, 16)


def until_commit(replication: PgReplication, transactions: int) -> list[dict[str, Any]]:
    """The stream's messages up to the end of its ``transactions``-th transaction."""
    messages: list[dict[str, Any]] = []
    while transactions:
        m = replication.next_message()
        assert m is not None, "the stream ended early"
        if m["type"] == "keepalive":
            continue
        messages.append(m)
        transactions -= m["type"] == "commit"
    return messages


def test_a_slot_streams_what_was_done_and_a_confirmed_position_moves_it(logical):
    slot = f"rivet_test_{os.getpid()}"
    with psycopg.connect(logical.url, autocommit=True) as sql:
        sql.execute(
            "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(12,2), big text, at timestamptz);"
            "ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL; CREATE PUBLICATION p FOR TABLE t"
        )
        replication = connect(logical)
        system = replication.identify_system()
        created = replication.create_slot(slot, False)
        assert created["name"] == slot and "snapshot" not in created
        sql.execute(
            "INSERT INTO t VALUES (1, 'a', 1.50, repeat('x', 5000), '2024-01-02 03:04:05.678901+00'),"
            " (2, NULL, -3, 'small', NULL)"
        )
        with sql.transaction():
            sql.execute("UPDATE t SET name = 'b' WHERE id = 1")
            sql.execute("UPDATE t SET id = 3 WHERE id = 2")
        sql.execute("DELETE FROM t WHERE id = 3")

        replication.start(slot, created["consistent_point"], ["p"], False)
        messages = until_commit(replication, 3)
        changes = [(m["type"], m.get("old_key"), m.get("new")) for m in messages if "relation" in m]
        assert changes == [
            ("insert", None, ["1", "a", "1.50", "x" * 5000, "2024-01-02 03:04:05.678901+00"]),
            ("insert", None, ["2", None, "-3.00", "small", None]),
            # The TOASTed value the update did not touch is not sent: `...`, never NULL.
            ("update", None, ["1", "b", "1.50", ..., "2024-01-02 03:04:05.678901+00"]),
            ("update", ["2", None, None, None, None], ["3", None, "-3.00", "small", None]),
            ("delete", ["3", None, None, None, None], None),
        ]
        (relation,) = [m for m in messages if m["type"] == "relation"]
        assert (relation["namespace"], relation["name"], relation["replica_identity"]) == ("public", "t", "default")
        assert [c[0] for c in relation["columns"]] == ["id", "name", "amount", "big", "at"]
        commits = [m for m in messages if m["type"] == "commit"]
        assert [m["type"] for m in messages if m["type"] in ("begin", "commit")] == ["begin", "commit"] * 3
        assert all(c["committed_at_us"] > 1_700_000_000_000_000 for c in commits)
        assert system["timeline"] == 1 and lsn(created["consistent_point"]) >= lsn(system["wal_position"])

        # Confirm the first transaction only: a restart streams the other two again, and nothing before.
        first_end = commits[0]["end_lsn"]
        replication.confirm(first_end, True)
        replication.stop()
        (confirmed,) = sql.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        assert confirmed == first_end

        # A connection streams once; the next stream opens its own.
        with pytest.raises(RivetError, match="streamed once already"):
            replication.start(slot, "0/0", ["p"], True)
        replication = connect(logical)
        replication.start(slot, "0/0", ["p"], True)
        again = [m for m in until_commit(replication, 2) if "relation" in m]
        assert [m["type"] for m in again] == ["update", "update", "delete"]
        # With the binary option, values come in their types' send form.
        assert again[1]["new"][0] == (3).to_bytes(4, "big")
        replication.stop()
        replication.drop_slot(slot)
        assert sql.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)


def test_names_from_a_config_reach_replication_commands_only_as_names(logical):
    replication = connect(logical)
    for bad in ("Orders", 'x"; DROP TABLE t; --', "a b", ""):
        with pytest.raises(ConfigError, match="a replication slot is named with lower-case letters"):
            replication.create_slot(bad, False)


def test_a_bounded_drain_ends_at_the_wal_end_it_was_given(logical):
    slot = f"rivet_drain_{os.getpid()}"
    with psycopg.connect(logical.url, autocommit=True) as sql:
        sql.execute("CREATE TABLE d (id int PRIMARY KEY); CREATE PUBLICATION pd FOR TABLE d")
        setup = connect(logical)
        created = setup.create_slot(slot, False)
        sql.execute("INSERT INTO d VALUES (1)")
        sql.execute("INSERT INTO d VALUES (2)")
        # Changes to another table move the WAL but are not published here.
        sql.execute("CREATE TABLE elsewhere AS SELECT 1 AS x")
        until = setup.identify_system()["wal_position"]
        sql.execute("INSERT INTO d VALUES (3)")  # after the run's end: left for the next run

        replication = connect(logical)
        replication.start(slot, created["consistent_point"], ["pd"], False)
        messages, end = replication.drain(until)
        inserted = [m["new"][0] for m in messages if m["type"] == "insert"]
        assert inserted == ["1", "2"]
        commits = [m for m in messages if m["type"] == "commit"]
        assert end == commits[-1]["end_lsn"] and lsn(end) <= lsn(until)
        replication.confirm(end, False)
        replication.stop()

        # The next run reads from the confirmed position: only what came after.
        replication = connect(logical)
        replication.start(slot, "0/0", ["pd"], False)
        messages, end = replication.drain(replication_end(sql))
        assert [m["new"][0] for m in messages if m["type"] == "insert"] == ["3"]
        replication.confirm(end, False)
        replication.stop()

        # With nothing to read, a drain returns at once, with no position.
        replication = connect(logical)
        replication.start(slot, "0/0", ["pd"], False)
        assert replication.drain(replication_end(sql)) == ([], None)
        replication.stop()
        setup.drop_slot(slot)


def replication_end(sql: psycopg.Connection) -> str:
    """The WAL end now."""
    row = sql.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


# The reader options of a scan with the default tuning, in small batches.
SCAN = {**scan_options(resolve_tuning(None, None)), "batch_rows": 3}


def test_changes_arrive_as_arrow_rows_that_replay_into_the_table(logical):
    import pyarrow as pa

    slot = f"rivet_arrow_{os.getpid()}"
    with psycopg.connect(logical.url, autocommit=True) as sql:
        sql.execute(
            "CREATE TABLE c (id int PRIMARY KEY, amount numeric(12,2), at timestamptz, flag bool, note text, big text);"
            "ALTER TABLE c ALTER COLUMN big SET STORAGE EXTERNAL; CREATE PUBLICATION pc FOR TABLE c"
        )
        setup = connect(logical)
        created = setup.create_slot(slot, False)
        sql.execute(
            "INSERT INTO c VALUES (1, 1.50, '2024-01-02 03:04:05.678901+00', true, 'a', repeat('x', 5000)),"
            " (2, -0.01, NULL, NULL, NULL, 'small')"
        )
        with sql.transaction():
            # Twice to one key in one transaction, and a row that lives and dies inside it.
            sql.execute("UPDATE c SET amount = amount + 1 WHERE id = 1")
            sql.execute("UPDATE c SET note = 'b' WHERE id = 1")
            sql.execute("INSERT INTO c VALUES (3, 3, NULL, false, 'gone', NULL)")
            sql.execute("DELETE FROM c WHERE id = 3")
        sql.execute("UPDATE c SET id = 4, big = 'moved' WHERE id = 2")
        until = replication_end(sql)

        replication = connect(logical)
        replication.start(slot, created["consistent_point"], ["pc"], True)
        start = str(created["consistent_point"])
        (reader,) = replication.stream_changes(
            until, PostgresSource(url=logical.url).connect_args(), [("public", "c", start)], SCAN, False, {}
        )
        table = pa.RecordBatchReader.from_stream(reader).read_all()
        assert table.schema.names[:5] == ["__op", "__pos", "__seq", "__committed_at", "__unchanged"]
        rows = table.to_pylist()
        assert_changes_of_c(rows)
        # The TOASTed value the updates left alone is named, not sent: NULL there never means NULL.
        assert [r["__unchanged"] for r in rows[2:4]] == [["big"], ["big"]] and rows[2]["big"] is None
        assert rows[0]["amount"] == Decimal("1.50") and rows[2]["amount"] == Decimal("2.50")
        assert rows[0]["at"] == dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
        assert replication.drained_to is not None and lsn(replication.drained_to) <= lsn(until)

        # Replayed in (__pos, __seq) order, keeping unchanged values, the changes are the table.
        replayed = replay(rows)
        live = sql.execute("SELECT id, amount, at, flag, note, big FROM c ORDER BY id").fetchall()
        names = ["id", "amount", "at", "flag", "note", "big"]
        assert [tuple(replayed[k][n] for n in names) for k in sorted(replayed)] == [tuple(r) for r in live]
        replication.stop()
        setup.drop_slot(slot)


def test_under_replica_identity_full_an_untouched_toasted_value_is_written_whole(logical):
    import pyarrow as pa

    slot = f"rivet_full_{os.getpid()}"
    with psycopg.connect(logical.url, autocommit=True) as sql:
        sql.execute(
            "CREATE TABLE f (id int PRIMARY KEY, n int, big text); ALTER TABLE f ALTER COLUMN big SET STORAGE EXTERNAL;"
            "ALTER TABLE f REPLICA IDENTITY FULL; CREATE PUBLICATION pf FOR TABLE f;"
            "INSERT INTO f VALUES (1, 1, repeat('a', 5000)), (2, 2, repeat('b', 5000))"
        )
        setup = connect(logical)
        created = setup.create_slot(slot, False)
        sql.execute("UPDATE f SET n = 10 WHERE id = 1")
        sql.execute("UPDATE f SET id = 3 WHERE id = 2")  # the key moves; big is left alone
        replication = connect(logical)
        replication.start(slot, created["consistent_point"], ["pf"], True)
        args = PostgresSource(url=logical.url).connect_args()
        start = str(created["consistent_point"])
        (reader,) = replication.stream_changes(replication_end(sql), args, [("public", "f", start)], SCAN, False, {})
        rows = pa.RecordBatchReader.from_stream(reader).read_all().to_pylist()
        assert [(r["__op"], r["id"], r["n"]) for r in rows] == [("update", 1, 10), ("delete", 2, 2), ("update", 3, 2)]
        # Nothing is left to a reader to fill in: the old row carried every value.
        assert [r["__unchanged"] for r in rows] == [[], [], []]
        assert [r["big"] for r in rows] == ["a" * 5000, "b" * 5000, "b" * 5000]
        replication.stop()
        setup.drop_slot(slot)


def test_the_slots_snapshot_and_its_stream_meet_with_no_gap_and_no_overlap(logical):
    import pyarrow as pa

    from rivet._native import PgSession

    slot = f"rivet_handover_{os.getpid()}"
    args = PostgresSource(url=logical.url).connect_args()
    with psycopg.connect(logical.url, autocommit=True) as sql:
        sql.execute(
            "CREATE TABLE h (id int PRIMARY KEY, v int); CREATE PUBLICATION ph FOR TABLE h;"
            "INSERT INTO h SELECT i, i FROM generate_series(1, 100) AS i"
        )
        replication = connect(logical)
        created = replication.create_slot(slot, True)
        assert created["snapshot"]
        # After the slot's consistent point: in its stream, not in its snapshot.
        sql.execute("UPDATE h SET v = v + 1000 WHERE id <= 10")
        sql.execute("DELETE FROM h WHERE id = 50")
        sql.execute("INSERT INTO h VALUES (101, 101)")

        # The table as of the consistent point, read in the snapshot the slot exported (its
        # connection stays idle meanwhile).
        session = PgSession(args)
        reader = session.scan(
            "SELECT id, v FROM h", None, {**SCAN, "batch_rows": 1000, "snapshot": created["snapshot"]}, {}, []
        )
        snapshot = {r["id"]: r for r in pa.RecordBatchReader.from_stream(reader).read_all().to_pylist()}
        assert sorted(snapshot) == list(range(1, 101)) and all(r["v"] == r["id"] for r in snapshot.values())

        replication.start(slot, created["consistent_point"], ["ph"], True)
        start = str(created["consistent_point"])
        (reader,) = replication.stream_changes(replication_end(sql), args, [("public", "h", start)], SCAN, False, {})
        changes = pa.RecordBatchReader.from_stream(reader).read_all().to_pylist()
        assert len(changes) == 12  # ten updates, a delete, an insert: each exactly once
        for change in changes:
            row = {k: v for k, v in change.items() if not k.startswith("__")}
            if change["__op"] == "delete":
                del snapshot[row["id"]]
            else:
                snapshot[row["id"]] = row
        live = sql.execute("SELECT id, v FROM h ORDER BY id").fetchall()
        assert [(k, snapshot[k]["v"]) for k in sorted(snapshot)] == live
        replication.stop()
        replication.drop_slot(slot)


def test_doctor_names_each_slot_and_the_wal_it_holds_back(logical, tmp_path):
    import json

    from tests.outputs import run_rivet, write_config

    slot = f"rivet_idle_{os.getpid()}"
    with psycopg.connect(logical.url, autocommit=True) as sql:
        sql.execute("CREATE TABLE IF NOT EXISTS kept (id int PRIMARY KEY)")
        sql.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        for i in range(3):  # each switch moves the WAL to a new 16 MiB segment the slot keeps
            sql.execute("INSERT INTO kept VALUES (%s)", (i,))
            sql.execute("SELECT pg_switch_wal()")
        config = write_config(tmp_path, logical.source, "- {name: kept, table: kept, destination: out}\n")
        ran = run_rivet("doctor", "-c", str(config), "--json")
        (held,) = sql.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        ).fetchone()
        sql.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    (check,) = [c for c in json.loads(ran.stdout)["checks"] if c["check"] == f"slot {slot}"]
    assert check["status"] == "ok" and f"{slot} (pgoutput, idle) keeps" in check["detail"], check
    assert held > 3 * 2**20 and f"{held / 2**20:.1f} MiB" in check["detail"]


def test_a_slot_that_lost_its_wal_fails_and_an_idle_one_holding_much_warns():
    from rivet.app.doctor import SLOT_WARN_BYTES, slot_check
    from rivet.sources.catalog import ReplicationSlot

    def verdict(active: bool, held: int, wal_status: str) -> str:
        return slot_check(ReplicationSlot("s", "pgoutput", active, held, wal_status)).status

    assert verdict(False, SLOT_WARN_BYTES + 1, "extended") == "warn"
    assert verdict(True, SLOT_WARN_BYTES + 1, "extended") == "ok"  # being read: it catches up
    assert verdict(False, 1024, "reserved") == "ok"
    assert verdict(True, 1024, "unreserved") == "warn"  # about to lose WAL it needs
    assert verdict(True, 0, "lost") == "fail"
