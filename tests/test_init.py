"""rivet init: a config written from a live catalog, which then runs as is and exports every row."""

from __future__ import annotations

import collections
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import MYSQL_URL, PG_URL, my_query
from tests.outputs import run_rivet
from tests.sources import numbers


def _rows(out: Path, columns: list[str]) -> collections.Counter:
    rows: collections.Counter = collections.Counter()
    for part in out.glob("*.parquet"):
        table = pq.read_table(part, columns=columns)
        rows.update(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    return rows


def _exports(config: Path) -> dict[str, dict]:
    return {e["name"]: e for e in yaml.safe_load(config.read_text())["exports"]}


@pytest.fixture
def pg_schema(pg_conn: psycopg.Connection) -> Iterator[str]:
    name = f"rt_init_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(f"CREATE SCHEMA {name}")
    yield name
    pg_conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.mark.postgres
def test_discover_chooses_modes_from_the_catalog_and_the_config_runs_as_is(pg, pg_schema, tmp_path):
    s = pg_schema
    pg.execute(
        f"CREATE TABLE {s}.orders (id serial PRIMARY KEY, total numeric(10,2), updated_at timestamptz NOT NULL);"
        f"INSERT INTO {s}.orders (total, updated_at) SELECT i * 1.5, now() - i * interval '1 minute' "
        "FROM generate_series(1, 50) i;"
        f"CREATE TABLE {s}.audit_log (id bigint PRIMARY KEY, message text);"
        f"INSERT INTO {s}.audit_log SELECT i, 'm' || i FROM generate_series(1, 30) i;"
        f"CREATE TABLE {s}.big (id int PRIMARY KEY, v text);"
        f"INSERT INTO {s}.big SELECT i, md5(i::text) FROM generate_series(1, 5000) i;"
        f"ANALYZE {s}.big;"
        f"CREATE TABLE {s}.shapes (name text, pt point);"
        f"INSERT INTO {s}.shapes VALUES ('a', point(1, 2)), ('b', NULL);"
    )
    base, _, _ = PG_URL.partition("?")
    url = base.replace("postgres@", "postgres:not-in-the-file@", 1) + "?sslmode=disable"
    config = tmp_path / "rivet.yaml"
    made = run_rivet("init", "--source", url, "--discover", "--schema", s, "--chunk-above", "1000", "-o", str(config))
    assert made.returncode == 0, made.stderr
    text = config.read_text()
    assert "not-in-the-file" not in text and "url_env: RIVET_SOURCE_URL" in text
    exports = _exports(config)
    assert exports["orders"]["mode"] == "incremental" and exports["orders"]["cursor_column"] == "updated_at"
    assert exports["audit_log"]["mode"] == "incremental" and exports["audit_log"]["cursor_column"] == "id"
    assert exports["big"]["mode"] == "chunked" and exports["big"]["chunk_column"] == "id"
    assert exports["big"]["parallel"] == 2 and exports["big"]["chunk_checkpoint"] is True
    assert "mode" not in exports["shapes"] and exports["shapes"]["columns"] == {"pt": "text"}
    assert f"# {s}.orders: " in text and "moves forward with every change" in text

    doctor = run_rivet("doctor", "-c", str(config), env={"RIVET_SOURCE_URL": url})
    assert doctor.returncode == 0, doctor.stderr
    ran = run_rivet("run", "-c", str(config), env={"RIVET_SOURCE_URL": url})
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "out"
    assert _rows(out / "big", ["id", "v"]) == collections.Counter(pg.execute(f"SELECT id, v FROM {s}.big").fetchall())
    assert sorted(i for (i,) in _rows(out / "orders", ["id"])) == list(range(1, 51))
    assert sorted(i for (i,) in _rows(out / "audit_log", ["id"])) == list(range(1, 31))
    assert _rows(out / "shapes", ["name", "pt"]) == collections.Counter({("a", "(1,2)"): 1, ("b", None): 1})

    # A destination that cannot be created fails the doctor, which names it.
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    config.write_text(config.read_text().replace("destination: out/big", f"destination: {blocked}/big"))
    doctor = run_rivet("doctor", "-c", str(config), env={"RIVET_SOURCE_URL": url})
    assert doctor.returncode == 1 and f"✗ destination {blocked}/big: write:" in doctor.stdout, doctor.stdout

    refused = run_rivet("init", "--source", url, "--schema", s, "-o", str(config))
    assert refused.returncode != 0 and "exists" in refused.stderr
    printed = run_rivet("init", "--schema", s, "--table", "orders", "-o", "-", env={"RIVET_SOURCE_URL": url})
    assert printed.returncode == 0 and list(_exports_of(printed.stdout)) == ["orders"]
    assert "mode" not in _exports_of(printed.stdout)["orders"]  # without --discover: full


def _exports_of(text: str) -> dict[str, dict]:
    return {e["name"]: e for e in yaml.safe_load(text)["exports"]}


@pytest.mark.mysql
def test_discover_on_mariadb(my_table, my_conn, tmp_path):
    changing = my_table(
        "CREATE TABLE {t} (id int PRIMARY KEY, updated_at datetime(6) NOT NULL, note varchar(10));\n"
        "INSERT INTO {t} VALUES (1, '2024-01-01 00:00:00', 'a'), (2, '2024-01-02 00:00:00', NULL)"
    )
    plain = my_table("CREATE TABLE {t} (code varchar(5), label text);\nINSERT INTO {t} VALUES ('x', 'ex')")
    config = tmp_path / "rivet.yaml"
    made = run_rivet("init", "--source", MYSQL_URL, "--discover", "-t", changing, "-t", plain, "-o", str(config))
    assert made.returncode == 0, made.stderr
    exports = _exports(config)
    assert exports[changing]["mode"] == "incremental" and exports[changing]["cursor_column"] == "updated_at"
    assert "mode" not in exports[plain]
    ran = run_rivet("run", "-c", str(config), env={"RIVET_SOURCE_URL": MYSQL_URL})
    assert ran.returncode == 0, ran.stderr
    source = collections.Counter(my_query(my_conn, f"SELECT id, note FROM {changing}"))
    assert _rows(tmp_path / "out" / changing, ["id", "note"]) == source
    assert _rows(tmp_path / "out" / plain, ["code", "label"]) == collections.Counter({("x", "ex"): 1})


@pytest.mark.mysql
def test_discover_proposes_keyset_chunks_for_a_large_mariadb_table_without_an_integer_key(my_table, my_conn, tmp_path):
    keyed = my_table(
        "CREATE TABLE {t} (tenant varchar(8) NOT NULL, code char(36) NOT NULL, n int, PRIMARY KEY (tenant, code));\n"
        f"INSERT INTO {{t}} SELECT CONCAT('t', MOD(i, 3)), UUID(), i FROM ({numbers(3000)}) AS n;\n"
        "ANALYZE TABLE {t}"
    )
    config = tmp_path / "rivet.yaml"
    made = run_rivet("init", "--source", MYSQL_URL, "--discover", "-t", keyed, "--chunk-above", "1000",
                     "-o", str(config))  # fmt: skip
    assert made.returncode == 0, made.stderr
    proposed = _exports(config)[keyed]
    assert proposed["mode"] == "chunked" and proposed["chunk_by_key"] == ["tenant", "code"], proposed
    ran = run_rivet("run", "-c", str(config), env={"RIVET_SOURCE_URL": MYSQL_URL})
    assert ran.returncode == 0, ran.stderr
    source = collections.Counter(my_query(my_conn, f"SELECT tenant, code, n FROM {keyed}"))
    assert _rows(tmp_path / "out" / keyed, ["tenant", "code", "n"]) == source


def test_a_sqlite_file_becomes_a_config_beside_it_or_elsewhere(tmp_path):
    db = tmp_path / "data" / "shop.db"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(1, 21)])
    config = tmp_path / "configs" / "rivet.yaml"
    config.parent.mkdir()
    made = run_rivet("init", "--source", str(db), "--discover", "-o", str(config))
    assert made.returncode == 0, made.stderr
    assert yaml.safe_load(config.read_text())["source"] == {"type": "sqlite", "path": "../data/shop.db"}
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    assert sorted(i for (i,) in _rows(config.parent / "out" / "items", ["id"])) == list(range(1, 21))
