"""Every SQL literal rivet writes means its value exactly, whatever the server's settings.

Values come from the data (a cursor value is user data), so hostile strings are sent
through each dialect against the real servers, with PostgreSQL's
``standard_conforming_strings`` on and off and MySQL's ``NO_BACKSLASH_ESCAPES`` on and
off: each comes back unchanged as one value, and nothing else runs.
"""

from __future__ import annotations

import datetime as dt
import decimal
import textwrap
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rivet.errors import RivetError
from rivet.sources.mysql.dialect import MysqlDialect
from rivet.sources.postgres.dialect import PostgresDialect
from tests.conftest import MYSQL_URL, my_query, pg_url
from tests.outputs import rows_by_glob, run_export_json, write_config

HOSTILE = [
    "",
    "'",
    "\\",
    "~\\",
    "\\'",
    "''",
    "~~\\' OR 1=1) UNION SELECT 1 #",
    "x'); DROP TABLE t; --",
    "*/ SELECT 1 /*",
    "-- comment",
    "# comment",
    "\\x00",
    "$$ $tag$",
    "é漢字🙂",
    "a" * 5000,
]
# Text a database can hold: no NUL for PostgreSQL, valid Unicode (no lone surrogates) for both.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.postgres
@pytest.mark.parametrize("scs", ["on", "off"])
@SETTINGS
@given(value=TEXT)
@example(value="~\\")
def test_postgres_string_literals_round_trip(pg, scs, value):
    pg.execute(f"SET standard_conforming_strings = {scs}")
    try:
        rows = pg.execute(f"SELECT {PostgresDialect().string(value)}").fetchall()
    finally:
        pg.execute("SET standard_conforming_strings = on")
    assert rows == [(value,)]


@pytest.mark.postgres
@pytest.mark.parametrize("scs", ["on", "off"])
@pytest.mark.parametrize("value", HOSTILE)
def test_postgres_hostile_strings(pg, scs, value):
    pg.execute(f"SET standard_conforming_strings = {scs}")
    try:
        rows = pg.execute(f"SELECT {PostgresDialect().string(value)} AS v").fetchall()
    finally:
        pg.execute("SET standard_conforming_strings = on")
    assert rows == [(value,)]


@pytest.mark.mysql
@pytest.mark.parametrize("no_backslash_escapes", [False, True])
@SETTINGS
@given(value=TEXT | st.just("\x00a"))
@example(value="~\\")
def test_mysql_string_literals_round_trip(my_conn, no_backslash_escapes, value):
    mode = "NO_BACKSLASH_ESCAPES" if no_backslash_escapes else ""
    my_query(my_conn, f"SET SESSION sql_mode = '{mode}'")
    try:
        rows = my_query(my_conn, f"SELECT {MysqlDialect().string(value)}")
    finally:
        my_query(my_conn, "SET SESSION sql_mode = DEFAULT")
    assert [tuple(r) for r in rows] == [(value,)]


@pytest.mark.mysql
@pytest.mark.parametrize("no_backslash_escapes", [False, True])
@pytest.mark.parametrize("value", HOSTILE)
def test_mysql_hostile_strings(my_conn, no_backslash_escapes, value):
    my_query(my_conn, f"SET SESSION sql_mode = '{'NO_BACKSLASH_ESCAPES' if no_backslash_escapes else ''}'")
    try:
        rows = my_query(my_conn, f"SELECT {MysqlDialect().string(value)} AS v")
    finally:
        my_query(my_conn, "SET SESSION sql_mode = DEFAULT")
    assert [tuple(r) for r in rows] == [(value,)]


VALUES = [
    0,
    -(2**63),
    2**64 - 1,
    decimal.Decimal("-12345678901234567890.000000001"),
    0.1,
    -1e300,
    dt.date(1, 1, 1),
    dt.date(9999, 12, 31),
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
]


@pytest.mark.postgres
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_postgres_typed_literals(pg, value):
    (got,) = pg.execute(f"SELECT {PostgresDialect().literal(value)}").fetchone()
    assert got == value
    if not isinstance(value, int):
        assert type(got) is type(value)


@pytest.mark.mysql
@pytest.mark.parametrize("value", [v for v in VALUES if not (isinstance(v, dt.date) and v.year == 1)], ids=repr)
def test_mysql_typed_literals(my_conn, value):
    (got,) = my_query(my_conn, f"SELECT {MysqlDialect().literal(value)}")[0]
    if isinstance(value, dt.datetime) and value.tzinfo:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, float):
        got = float(got)
    assert got == value


# -- the cursor of an incremental export, end to end ---------------------------------------


def _config(tmp_path: Path, kind: str, url: str, table: str) -> Path:
    body = f"- name: inc\n  table: {table}\n  mode: incremental\n  cursor_column: k\n  destination: out\n"
    return write_config(tmp_path, {"type": kind, "url": url}, body)


@pytest.mark.mysql
@pytest.mark.parametrize("no_backslash_escapes", [False, True])
def test_mysql_text_cursors_with_backslashes_and_quotes_keep_working(my_conn, my_table, tmp_path, no_backslash_escapes):
    t = my_table("CREATE TABLE {t} (id INT, k VARCHAR(100) COLLATE utf8mb4_bin)")
    my_query(my_conn, f"INSERT INTO {t} VALUES (1, 'a'), (2, '~\\\\')")
    previous = my_query(my_conn, "SELECT @@GLOBAL.sql_mode")[0][0]
    if no_backslash_escapes:
        my_query(my_conn, f"SET GLOBAL sql_mode = '{previous},NO_BACKSLASH_ESCAPES'")
    try:
        config = _config(tmp_path, "mysql", MYSQL_URL, t)
        first = run_export_json(config)
        assert first["code"] == 0 and first["rows"] == 2, first["stderr"]
        # The stored cursor is '~\'; the crafted value would turn a naive literal into SQL.
        crafted = "~~\\' OR 1=1) UNION SELECT 99, 'x' #"
        with my_conn.cursor() as cur:
            cur.execute(f"INSERT INTO {t} VALUES (3, %s), (4, %s)", (crafted, "0"))
        second = run_export_json(config)
        assert second["code"] == 0, second["stderr"]
        assert sorted(k[0] for k in rows_by_glob(tmp_path / "out", "inc", ["id"])) == [1, 2, 3]
        third = run_export_json(config)
        assert third["code"] == 0 and third["status"] == "empty", third["stderr"]
    finally:
        my_query(my_conn, f"SET GLOBAL sql_mode = '{previous}'")


@pytest.mark.postgres
def test_postgres_text_cursors_work_without_standard_conforming_strings(pg, pg_table, tmp_path):
    t = pg_table('CREATE TABLE {t} (id int, k text COLLATE "C")')
    pg.execute(f"INSERT INTO {t} VALUES (1, 'a'), (2, %s)", ("~\\",))
    role = f"rivet_scs_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE ROLE {role} LOGIN")
    pg.execute(f"ALTER ROLE {role} SET standard_conforming_strings = off")
    pg.execute(f"GRANT SELECT ON {t} TO {role}")
    try:
        url = pg_url().replace("postgres@", f"{role}@", 1)
        config = _config(tmp_path, "postgres", url, t)
        first = run_export_json(config)
        assert first["code"] == 0 and first["rows"] == 2, first["stderr"]
        pg.execute(f"INSERT INTO {t} VALUES (3, %s), (4, '0')", ("~~\\' OR 1=1) UNION SELECT 99, 'x' --",))
        second = run_export_json(config)
        assert second["code"] == 0, second["stderr"]
        assert sorted(k[0] for k in rows_by_glob(tmp_path / "out", "inc", ["id"])) == [1, 2, 3]
    finally:
        pg.execute(f"DROP OWNED BY {role}")
        pg.execute(f"DROP ROLE {role}")


# -- statements stacked after a query --------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["full", "chunked"])
def test_a_statement_stacked_after_a_postgres_query_never_runs(pg, pg_table, tmp_path, mode):
    victim = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    query = f"SELECT 1 AS id; DELETE FROM {victim}; COMMIT; DROP TABLE {victim}"
    chunking = "  mode: chunked\n  chunk_column: id\n" if mode == "chunked" else ""
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source:\n  type: postgres\n  url: "{pg_url()}"\nexports:\n'
        + textwrap.indent(f'- name: s\n  query: "{query}"\n{chunking}  destination: out\n', "  ")
    )
    result = run_export_json(config)
    # Refused by the server's extended protocol, not failed for some other reason.
    assert result["code"] == 1, result["stderr"]
    assert "cannot insert multiple commands into a prepared statement" in result["error"]
    assert pg.execute(f"SELECT count(*) FROM {victim}").fetchone()[0] == 1


@pytest.mark.mysql
def test_a_statement_stacked_after_a_mysql_query_never_runs(my_conn, my_table, tmp_path):
    victim = my_table("CREATE TABLE {t} (id INT);\nINSERT INTO {t} VALUES (1)")
    config = tmp_path / "rivet.yaml"
    query = f"SELECT 1 AS id; DROP TABLE {victim}"
    config.write_text(
        f'source:\n  type: mysql\n  url: "{MYSQL_URL}"\nexports:\n'
        + textwrap.indent(f'- name: s\n  query: "{query}"\n  destination: out\n', "  ")
    )
    result = run_export_json(config)
    # One statement per query (no multi-statement flag): the server stops at the ';'.
    assert result["code"] == 1, result["stderr"]
    assert f"near 'DROP TABLE {victim}'" in result["error"]
    assert my_query(my_conn, f"SELECT count(*) FROM {victim}")[0][0] == 1


@pytest.mark.postgres
@pytest.mark.parametrize("method", ["copy", "cursor"])
def test_a_chunk_statement_cannot_close_its_parenthesis_and_run_more(pg, pg_table, method):
    # A chunk query is wrapped as COPY (...) or DECLARE ... FOR ...: one that closes the
    # parenthesis and stacks statements after COMMIT would run outside the read-only
    # transaction if the wrapper went through the simple protocol.
    from rivet import _native
    from rivet.config.tuning import PROFILES
    from rivet.sources.base import scan_options
    from rivet.sources.postgres.source import PostgresSource

    victim = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    crafted = f"SELECT 1 AS id) TO STDOUT; COMMIT; DROP TABLE {victim}; COPY (SELECT 1 AS id"
    if method == "cursor":
        crafted = f"SELECT 1 AS id; COMMIT; DROP TABLE {victim}; SELECT 1 AS id"
    session = _native.PgSession(PostgresSource(url=pg_url()).connect_args())
    options = scan_options(PROFILES["balanced"], method=method)
    with pytest.raises(RivetError, match="cannot insert multiple commands into a prepared statement"):
        reader = session.scan(crafted, "SELECT 1 AS id", options, {}, [])
        while reader.next_batch() is not None:
            pass
    assert pg.execute(f"SELECT count(*) FROM {victim}").fetchone()[0] == 1
