"""Export modes on every database server: the same body, the same rows."""

from __future__ import annotations

from tests.outputs import assert_time_windows, noons_back


def test_time_window(database_server, out):
    today, noons = noons_back(10)
    assert_time_windows(database_server.url, database_server.noon_table(noons), out, today, 10)
