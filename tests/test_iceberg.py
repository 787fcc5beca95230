"""format: iceberg: each run's parts in one snapshot, read back by pyiceberg, polars and DuckDB."""

from __future__ import annotations

import collections
import functools
import importlib
import json
from pathlib import Path

import polars as pl
import pyiceberg.catalog as pyiceberg_catalog
import pytest

from tests.conftest import MYSQL_URL, my_query, s3_destination
from tests.orders import insert_orders, orders_config, source_rows
from tests.outputs import run_rivet

COLUMNS = ["id", "amount", "at", "note"]


write_config = functools.partial(orders_config, fmt="iceberg")


def load_table(home: Path, name: str = "orders", **properties):
    """The export's table, from the default catalog beside the config unless told otherwise."""
    properties.setdefault("uri", f"sqlite:///{home / '.rivet_iceberg.db'}")
    catalog = pyiceberg_catalog.load_catalog("rivet", type="sql", **properties)
    return catalog.load_table(("rivet", name))


def load_table_or_none(home: Path):
    """The export's table, or None when its catalog has none."""
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return load_table(home)
    except NoSuchTableError:
        return None


def iceberg_rows(table, columns=COLUMNS) -> collections.Counter:
    found = table.scan(selected_fields=tuple(columns)).to_arrow()
    return collections.Counter(zip(*(found.column(c).to_pylist() for c in columns), strict=True))


def polars_rows(table, columns=COLUMNS) -> collections.Counter:
    return collections.Counter(pl.scan_iceberg(table).select(columns).collect().iter_rows())


def duckdb_rows(table, columns=COLUMNS) -> collections.Counter:
    import duckdb

    connection = duckdb.connect()
    for name in ("avro", "iceberg"):
        module = importlib.import_module(f"duckdb_extension_{name}")
        connection.execute(f"LOAD '{Path(module.__file__).parent / f'extensions/v1.5.5/{name}.duckdb_extension'}'")
    selected = ", ".join(f'"{c}"' for c in columns)
    found = connection.sql(f"SELECT {selected} FROM iceberg_scan('{table.metadata_location}')").fetchall()
    return collections.Counter(found)


def snapshot_runs(table) -> list[str | None]:
    """The run id of each snapshot, oldest first."""
    return [s.summary.get("rivet.run_id") for s in table.snapshots()]


@pytest.fixture(autouse=True)
def pyiceberg_planner(monkeypatch):
    # polars plans Iceberg scans with pyiceberg when its own planner is not installed; say so.
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")


@pytest.mark.postgres
def test_a_full_export_replaces_the_table_in_one_snapshot_each_run(pg, orders, tmp_path):
    config = write_config(tmp_path, {"table": orders})
    assert run_rivet("run", "-c", str(config)).returncode == 0
    pg.execute(f"DELETE FROM {orders} WHERE id > 2000")
    ran = run_rivet("run", "-c", str(config), "--json")
    assert ran.returncode == 0, ran.stderr
    table = load_table(tmp_path)
    expected = source_rows(pg, orders)
    assert iceberg_rows(table) == expected
    assert polars_rows(table) == expected
    assert duckdb_rows(table) == expected
    assert str(table.schema().find_field("amount").field_type) == "decimal(12, 3)"
    assert str(table.schema().find_field("at").field_type) == "timestamptz"
    run_id = json.loads(ran.stdout)["exports"][0]["run_id"]
    assert len(snapshot_runs(table)) == 2 and snapshot_runs(table)[-1] == run_id
    # The first run's snapshot stays readable until the next run, which removes its parts.
    first = table.snapshots()[0].snapshot_id
    assert table.scan(snapshot_id=first).to_arrow().num_rows == 3000
    assert run_rivet("run", "-c", str(config)).returncode == 0
    table = load_table(tmp_path)
    live = {task.file.file_path.rsplit("/", 1)[-1] for task in table.scan().plan_files()}
    previous = {
        t.file.file_path.rsplit("/", 1)[-1]
        for t in table.scan(snapshot_id=table.snapshots()[1].snapshot_id).plan_files()
    }
    assert {p.name for p in (tmp_path / "out").glob("*.parquet")} == live | previous
    assert run_rivet("validate", "-c", str(config)).returncode == 0


@pytest.mark.postgres
def test_a_full_run_with_changed_columns_evolves_the_tables_schema(pg, orders, tmp_path):
    config = write_config(tmp_path, {"table": orders})
    assert run_rivet("run", "-c", str(config)).returncode == 0
    pg.execute(f"ALTER TABLE {orders} ADD COLUMN region text DEFAULT 'eu'")
    pg.execute(f"ALTER TABLE {orders} DROP COLUMN note")
    pg.execute(f"ALTER TABLE {orders} ALTER COLUMN amount TYPE text")  # no Iceberg promotion: replaced
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    table = load_table(tmp_path)
    assert sorted(f.name for f in table.schema().fields) == ["amount", "at", "id", "region"]
    assert str(table.schema().find_field("amount").field_type) == "string"
    expected = collections.Counter(pg.execute(f"SELECT id, amount, at, region FROM {orders}").fetchall())
    columns = ["id", "amount", "at", "region"]
    assert iceberg_rows(table, columns) == expected
    assert polars_rows(table, columns) == expected
    assert duckdb_rows(table, columns) == expected


@pytest.mark.postgres
def test_an_iceberg_table_on_s3_in_a_postgresql_catalog(pg, orders, s3_bucket, s3_endpoint, pg_state_url, tmp_path):
    config = write_config(tmp_path, {"table": orders, "mode": "incremental", "cursor_column": "id"})
    doc = json.loads(config.read_text())
    doc["exports"][0]["destination"] = s3_destination(s3_bucket, s3_endpoint, "lake/orders")
    doc["exports"][0]["iceberg"] = {"catalog_url": pg_state_url, "namespace": "sales", "table": "orders_lake"}
    config.write_text(json.dumps(doc))
    env = {"RIVET_T_KEY": "testing", "RIVET_T_SECRET": "testing"}
    assert run_rivet("run", "-c", str(config), env=env).returncode == 0
    insert_orders(pg, orders, 3001, 3100)
    ran = run_rivet("run", "-c", str(config), env=env)
    assert ran.returncode == 0, ran.stderr
    catalog = pyiceberg_catalog.load_catalog(
        "rivet",
        type="sql",
        uri=pg_state_url.replace("postgresql://", "postgresql+psycopg://"),
        **{"s3.endpoint": s3_endpoint, "s3.access-key-id": "testing", "s3.secret-access-key": "testing"},
        **{"s3.region": "us-east-1"},
    )
    try:
        table = catalog.load_table(("sales", "orders_lake"))
        assert table.location() == f"s3://{s3_bucket}/lake/orders"
        assert len(snapshot_runs(table)) == 2
        assert iceberg_rows(table) == source_rows(pg, orders)
    finally:
        catalog.engine.dispose()
    assert not (tmp_path / ".rivet_iceberg.db").exists()


@pytest.mark.mysql
def test_an_unsigned_column_is_refused_before_anything_is_written(my_conn, my_table, tmp_path):
    table = my_table("CREATE TABLE {t} (id INT PRIMARY KEY, hits INT UNSIGNED)")
    my_query(my_conn, f"INSERT INTO {table} VALUES (1, 4000000000)")
    config = write_config(tmp_path, {"table": table}, {"type": "mysql", "url": MYSQL_URL})
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode != 0
    assert "column hits is uint32, and Iceberg has no unsigned integers" in ran.stderr
    assert "CAST(hits AS SIGNED) AS hits" in ran.stderr
    assert not list((tmp_path / "out").glob("*.parquet"))
    query = f"SELECT id, CAST(hits AS SIGNED) AS hits FROM {table}"
    config = write_config(tmp_path, {"query": query}, {"type": "mysql", "url": MYSQL_URL})
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    assert iceberg_rows(load_table(tmp_path), ["id", "hits"]) == collections.Counter([(1, 4000000000)])


@pytest.mark.postgres
def test_partition_by_becomes_the_tables_partition_spec(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, region text, at timestamptz, day date)")
    pg.execute(
        f"INSERT INTO {table} SELECT i, (ARRAY['eu', 'us', NULL, 'a/very long region name past sixteen'])[i % 4 + 1], "
        "timestamptz '2024-01-30 22:00+00' + i * interval '37 minutes', date '2024-02-01' + i % 3 "
        "FROM generate_series(1, 400) i"
    )
    config = write_config(tmp_path, {"table": table, "partition_by": ["region", "at"]})
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    iceberg_table = load_table(tmp_path)
    assert [(f.name, str(f.transform)) for f in iceberg_table.spec().fields] == [
        ("region", "identity"),
        ("at_day", "day"),
    ]
    columns = ["id", "region", "at", "day"]
    expected = collections.Counter(pg.execute(f"SELECT id, region, at, day FROM {table}").fetchall())
    assert iceberg_rows(iceberg_table, columns) == expected
    assert polars_rows(iceberg_table, columns) == expected
    assert duckdb_rows(iceberg_table, columns) == expected
    # Each part's partition value is right: a filter on it reads only the parts that hold its rows.
    from pyiceberg.expressions import EqualTo, IsNull

    for condition, sql in ((EqualTo("region", "eu"), "region = 'eu'"), (IsNull("region"), "region IS NULL")):
        planned = iceberg_table.scan(row_filter=condition).plan_files()
        assert 0 < len(planned) < len(iceberg_table.scan().plan_files())
        assert (
            sum(task.file.record_count for task in planned)
            == pg.execute(f"SELECT count(*) FROM {table} WHERE {sql}").fetchone()[0]
        )
    # A run partitioned otherwise is refused, naming the table's partitioning.
    doc = json.loads(config.read_text())
    doc["exports"][0]["partition_by"] = "day"
    config.write_text(json.dumps(doc))
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode != 0
    assert "is partitioned by identity(region), day(at), unlike this export's partition_by" in ran.stderr
    assert len(snapshot_runs(load_table(tmp_path))) == 1  # refused before anything was published
    checked = json.loads(run_rivet("validate", "-c", str(config), "--json").stdout)
    assert not [p for p in checked["exports"][0]["problems"] if "Iceberg" in p or "manifest" in p]


@pytest.mark.parametrize(
    ("export", "message"),
    [
        ({"format": "parquet", "iceberg": {"namespace": "x"}}, "iceberg: applies to format: iceberg"),
        ({"iceberg": {"catalog_url": "mysql://h/db"}}, "catalog_url is sqlite:///<file>, postgresql://"),
        ({"iceberg": {"table": "a.b"}}, "iceberg.table"),
        (
            {"partition_by": "id", "parquet": {"statistics": False}},
            "format: iceberg with partition_by needs parquet.statistics",
        ),
    ],
)
def test_iceberg_config_mistakes_are_named(tmp_path, export, message):
    config = write_config(tmp_path, {"table": "t", **export})
    checked = run_rivet("check", "--config-only", "-c", str(config))
    assert checked.returncode == 2
    assert message in checked.stderr


@pytest.mark.postgres
def test_an_unreachable_catalog_fails_the_run_without_showing_its_password(orders, tmp_path):
    config = write_config(tmp_path, {"table": orders})
    doc = json.loads(config.read_text())
    doc["exports"][0]["iceberg"] = {"catalog_url": "postgresql://lake:s3cr3t-pw@127.0.0.1:1/catalog"}
    config.write_text(json.dumps(doc))
    ran = run_rivet("run", "-c", str(config), "--json")
    assert ran.returncode != 0
    assert "the Iceberg table rivet.orders in postgresql://lake:***@127.0.0.1:1/catalog" in ran.stderr
    assert "s3cr3t-pw" not in ran.stderr + ran.stdout
    assert not list((tmp_path / "out").glob("*.parquet"))  # checked before the commit: nothing published
    described = run_rivet("plan", "-c", str(config), "--json")
    assert "s3cr3t-pw" not in described.stdout + described.stderr


@pytest.mark.postgres
def test_a_silent_catalog_fails_the_run_before_it_publishes(orders, silent_server, tmp_path):
    config = write_config(tmp_path, {"table": orders, "iceberg": {"catalog_url": silent_server}})
    ran = run_rivet("run", "-c", str(config), env={"RIVET_TABLE_CHECK_TIMEOUT_S": "2"})
    assert ran.returncode != 0
    assert "the Iceberg table's catalog or store did not answer in 2 s; nothing was published" in ran.stderr
    assert not list((tmp_path / "out").glob("*.parquet"))
