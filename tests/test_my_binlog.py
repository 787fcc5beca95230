"""MariaDB's binary log read by rivet's own replica client: every row change, value for value, from a
position to the end of the log. Runs against a throwaway server started with a ROW-format log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rivet._native import MyBinlog
from rivet.config.tuning import resolve_tuning
from rivet.errors import QueryError
from rivet.sources.base import scan_options
from rivet.sources.mysql.source import MysqlSource
from tests.changes import assert_changes_of_c, replay
from tests.servers import MariadbServer, mariadb_server

pytestmark = pytest.mark.mysql


@pytest.fixture(scope="module")
def logged() -> Iterator[MariadbServer]:
    options = ("--log-bin={root}/data/bin", "--binlog-format=ROW", "--server-id=1")
    with mariadb_server(options=options) as server:
        yield server


def reader(server: MariadbServer) -> MyBinlog:
    return MyBinlog(MysqlSource(url=server.url).connect_args())


def row_events(events: list[dict[str, Any]], table: str) -> list[tuple[str, Any, Any]]:
    """``(type, before, after)`` for every row of ``table``'s row events."""
    names = {e["table_id"]: e["table"] for e in events if e["type"] == "table_map"}
    return [
        (e["type"], before, after)
        for e in events
        if e["type"] in ("write", "update", "delete") and names[e["table_id"]] == table
        for before, after in e["rows"]
    ]


def test_a_replica_reads_every_row_change_from_a_position_to_the_end(logged):
    logged.sql(
        "CREATE TABLE test.t (id INT PRIMARY KEY, big BIGINT UNSIGNED, amount DECIMAL(15,2), name VARCHAR(20),"
        " at DATETIME(6), tm TIME(6), e ENUM('a','b')) DEFAULT CHARSET=utf8mb4"
    )
    start = reader(logged).end()
    logged.sql(
        "INSERT INTO test.t VALUES (1, 18446744073709551615, -1234567890123.45, 'Grüße 🎉',"
        " '2024-02-29 12:34:56.123456', '-838:59:59.000001', 'b'), (2, NULL, 0.01, NULL, NULL, NULL, NULL);"
        "BEGIN; UPDATE test.t SET name = 'b' WHERE id = 1; DELETE FROM test.t WHERE id = 2; COMMIT;"
    )
    end = reader(logged).end()
    events = reader(logged).read(start[0], start[1], 4242)
    assert events[-1]["next_position"] == end[1]  # read to the end of the log, and no further
    changes = row_events(events, "t")
    assert [c[0] for c in changes] == ["write", "write", "update", "delete"]
    first = changes[0][2]
    assert first == [
        1,
        2**64 - 1,
        "-1234567890123.45",
        "Grüße 🎉".encode(),
        (2024, 2, 29, 12, 34, 56, 123456),
        (-1, 838, 59, 59, 1),
        2,
    ]
    assert changes[1][2] == [2, None, "0.01", None, None, None, None]
    before, after = changes[2][1], changes[2][2]
    assert before == first and after[3] == b"b" and after[:3] == first[:3]
    assert changes[3][1][0] == 2 and changes[3][2] is None
    # Each transaction ends with its commit.
    assert sum(e["type"] == "xid" for e in events) == 2


def test_a_position_past_the_end_of_the_log_is_refused(logged):
    file, offset = reader(logged).end()
    with pytest.raises(QueryError, match="impossible position") as refused:
        reader(logged).read(file, offset + 1_000_000, 4243)
    assert refused.value.code == "1236"  # the server's code: a retry cannot help


# The reader options of a scan with the default tuning, in small batches.
SCAN = {**scan_options(resolve_tuning(None, None)), "batch_rows": 2}


def test_changes_arrive_as_arrow_rows_that_replay_into_the_table(logged):
    import datetime as dt
    from decimal import Decimal

    import pyarrow as pa
    import pymysql

    logged.sql(
        "CREATE TABLE test.c (id INT PRIMARY KEY, amount DECIMAL(12,2), at TIMESTAMP(6) NULL, big BIGINT UNSIGNED,"
        " m MEDIUMINT, e ENUM('x','y'), note VARCHAR(20)) DEFAULT CHARSET=utf8mb4"
    )
    file, offset = reader(logged).end()
    logged.sql(
        "INSERT INTO test.c VALUES (1, 1.50, '2024-01-02 03:04:05.678901', 18446744073709551615, -8388608, 'y', 'a'),"
        " (2, -0.01, NULL, NULL, NULL, NULL, NULL);"
        "BEGIN; UPDATE test.c SET amount = amount + 1 WHERE id = 1; UPDATE test.c SET note = 'b' WHERE id = 1;"
        " INSERT INTO test.c VALUES (3, 3, NULL, 0, 0, 'x', 'gone'); DELETE FROM test.c WHERE id = 3; COMMIT;"
        "UPDATE test.c SET id = 4 WHERE id = 2;"
    )
    binlog = reader(logged)
    (stream,) = binlog.stream_changes(
        [("test", "c", file, offset)], 4244, MysqlSource(url=logged.url).connect_args(), SCAN, False
    )
    rows = pa.RecordBatchReader.from_stream(stream).read_all().to_pylist()
    assert_changes_of_c(rows)
    assert rows[0]["amount"] == Decimal("1.50") and rows[0]["big"] == 2**64 - 1 and rows[0]["m"] == -8388608
    assert rows[0]["at"] == dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
    assert rows[0]["e"] == "y" and all(r["__unchanged"] == [] for r in rows)
    assert binlog.drained_to == reader(logged).end()

    replayed = replay(rows)
    connection = pymysql.connect(host="127.0.0.1", port=logged.port, user="root", database="test")
    with connection, connection.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT id, amount, at, big, m, e, note FROM c ORDER BY id")
        live = cur.fetchall()
    names = ["id", "amount", "at", "big", "m", "e", "note"]
    as_naive = [tuple(v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v for v in (r[n] for n in names))
                for r in (replayed[k] for k in sorted(replayed))]  # fmt: skip
    assert as_naive == [tuple(r) for r in live]
