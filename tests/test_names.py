"""Names as schemas really have them: mixed case, spaces, quotes, reserved words, dots, ``${...}``, line breaks.

``rivet init --discover`` writes a config that exports each such table exactly and
nothing else; ``table:`` reads a name both as exact parts and as SQL.
"""

from __future__ import annotations

import collections
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pymysql
import pytest
import yaml

from tests.conftest import MYSQL_URL, my_query, pg_url
from tests.outputs import run_rivet

# Table names an ORM, a spreadsheet import or a hostile user gives; every one must come out as itself.
INJECTED = "x\n  - name: pwned\n    table: secrets\n    destination: /p"  # under 63 bytes
NAMES = [
    "User",
    "user",
    "my table",
    'we"ird',
    "we`ird",
    "select",
    "café",
    "${HOME}",
    "a.b",
    " padded ",
    INJECTED,
]
PG_LONGEST = "T" * 63
MY_LONGEST = "M" * 64


def _rows(folder: Path) -> collections.Counter:
    found: collections.Counter = collections.Counter()
    manifest = json.loads((folder / "manifest.json").read_text())
    for part in manifest["parts"]:
        table = pq.read_table(folder / part["name"])
        found.update(zip(table.column("id").to_pylist(), table.column("createdAt").to_pylist(), strict=True))
    return found


def _init_and_run(url: str, schema: str, tmp_path: Path, expected: dict[str, collections.Counter]) -> None:
    config = tmp_path / "rivet.yaml"
    made = run_rivet("init", "--source", url, "--discover", "--schema", schema, "-o", str(config))
    assert made.returncode == 0, made.stderr
    exports = yaml.safe_load(config.read_text())["exports"]
    assert len(exports) == len(expected)  # a name with a line break added no export of its own
    assert not any(e["name"] == "pwned" for e in exports) and "/p" not in [e["destination"] for e in exports]
    by_table = {_table_part(e["table"], schema): e for e in exports}
    ran = run_rivet("run", "-c", str(config), env={"RIVET_SOURCE_URL": url})
    assert ran.returncode == 0, ran.stderr
    names = [e["name"] for e in exports]
    assert len({n.lower() for n in names}) == len(names)  # unique where letter case does not count
    assert set(by_table) == set(expected)
    for table, rows in expected.items():
        assert _rows(config.parent / by_table[table]["destination"]) == rows, table


def _table_part(written: str, schema: str) -> str:
    """The table's name in ``schema.<table>`` as init wrote it: bare, or quoted with the quote doubled.

    ``$${`` is how a config writes a literal ``${``.
    """
    assert written.startswith(f"{schema}."), written
    part = written[len(schema) + 1 :].replace("$${", "${")
    for quote in '"`':
        if part.startswith(quote) and part.endswith(quote) and len(part) > 1:
            return part[1:-1].replace(quote * 2, quote)
    return part


@pytest.fixture
def pg_schema(pg_conn: psycopg.Connection) -> Iterator[str]:
    name = f"Rt Names {uuid.uuid4().hex[:6]}"  # the schema's own name is mixed case with a space
    pg_conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    pg_conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def _pg_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.mark.postgres
def test_init_and_run_export_every_postgresql_table_by_its_exact_name(pg, pg_schema, tmp_path):
    expected = {}
    for n, name in enumerate([*NAMES, PG_LONGEST]):
        table = f"{_pg_quote(pg_schema)}.{_pg_quote(name)}"
        pg.execute(f'CREATE TABLE {table} (id int PRIMARY KEY, "createdAt" timestamptz NOT NULL)')
        pg.execute(
            f"INSERT INTO {table} SELECT i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour' "
            f"FROM generate_series(1, {n + 1}) i"
        )
        expected[name] = collections.Counter(pg.execute(f'SELECT id, "createdAt" FROM {table}').fetchall())
    url = pg_url()
    _init_and_run(url, pg_schema, tmp_path, expected)


@pytest.mark.postgres
def test_table_reads_exact_parts_and_quoted_sql_alike(pg, pg_schema, tmp_path):
    table = f'{_pg_quote(pg_schema)}."User"'
    pg.execute(f'CREATE TABLE {table} (id int PRIMARY KEY, "createdAt" timestamptz NOT NULL)')
    pg.execute(f"INSERT INTO {table} VALUES (1, '2024-01-01T00:00:00Z'), (2, '2024-01-02T00:00:00Z')")
    expected = collections.Counter(pg.execute(f'SELECT id, "createdAt" FROM {table}').fetchall())
    for n, written in enumerate([f"{pg_schema}.User", f'{pg_schema}."User"', f'"{pg_schema}"."User"']):
        config = tmp_path / f"c{n}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "source": {"type": "postgres", "url": pg_url()},
                    "exports": [{"name": f"u{n}", "table": written, "destination": f"out{n}"}],
                }
            )
        )
        ran = run_rivet("run", "-c", str(config))
        assert ran.returncode == 0, ran.stderr
        assert _rows(tmp_path / f"out{n}") == expected
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        yaml.safe_dump(
            {
                "source": {"type": "postgres", "url": pg_url()},
                "exports": [{"name": "w", "table": f'{pg_schema}."User', "destination": "w"}],
            }
        )
    )
    refused = run_rivet("run", "-c", str(wrong))
    assert refused.returncode == 2 and "a quoted name is not closed" in refused.stderr


@pytest.fixture
def my_database(my_conn: pymysql.connections.Connection) -> Iterator[str]:
    name = f"rt_names_{uuid.uuid4().hex[:6]}"
    my_query(my_conn, f"CREATE DATABASE `{name}`")
    yield name
    my_query(my_conn, f"DROP DATABASE `{name}`")


@pytest.mark.mysql
def test_init_and_run_export_every_mariadb_table_by_its_exact_name(my_conn, my_database, tmp_path):
    expected = {}
    for n, name in enumerate([*NAMES, MY_LONGEST]):
        if name != name.rstrip():
            continue  # MariaDB refuses names that end in a space
        table = f"`{my_database}`.`{name.replace('`', '``')}`"
        my_query(my_conn, f"CREATE TABLE {table} (id int PRIMARY KEY, `createdAt` datetime(6) NOT NULL)")
        with my_conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (%s, %s)", [(i, f"2024-01-01 0{i % 10}:00:00") for i in range(1, n + 2)]
            )
        expected[name] = collections.Counter(my_query(my_conn, f"SELECT id, `createdAt` FROM {table}"))
    base = MYSQL_URL.rsplit("/", 1)[0]
    _init_and_run(f"{base}/{my_database}", my_database, tmp_path, expected)


def test_init_refuses_an_environment_variable_name_it_could_not_read(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
    made = run_rivet("init", "--source", str(db), "--url-env", "X}\n  - evil", "-o", "-")
    assert made.returncode == 2 and "is not an environment variable name" in made.stderr
