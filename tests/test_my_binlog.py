"""MariaDB's binary log read by rivet's own replica client: every row change, value for value, from a
position to the end of the log. Runs against a throwaway server started with a ROW-format log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rivet._native import MyBinlog
from rivet.errors import QueryError
from rivet.sources.mysql.source import MysqlSource
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
