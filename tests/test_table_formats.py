"""What Delta and Iceberg exports share: schema evolution of appends, and refusals before reading."""

from __future__ import annotations

import collections
import json

import pytest

from tests.conftest import PG_URL
from tests.orders import insert_orders, source_rows
from tests.outputs import run_rivet
from tests.test_iceberg import load_table, write_config

deltalake = pytest.importorskip("deltalake")

COLUMNS = ["id", "note", "region"]


def table_rows(home, table_format: str) -> collections.Counter:
    if table_format == "delta":
        found = deltalake.DeltaTable(str(home / "out")).to_pyarrow_table(columns=COLUMNS)
    else:
        found = load_table(home).scan(selected_fields=tuple(COLUMNS)).to_arrow()
    return collections.Counter(zip(*(found.column(c).to_pylist() for c in COLUMNS), strict=True))


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_evolve_adds_a_new_column_to_an_appended_table(pg, orders, tmp_path, table_format):
    export = {"table": orders, "mode": "incremental", "cursor_column": "id", "format": table_format}
    config = write_config(tmp_path, {**export, "on_schema_drift": "evolve"})
    assert run_rivet("run", "-c", str(config)).returncode == 0
    pg.execute(f"ALTER TABLE {orders} ADD COLUMN region text DEFAULT 'eu'")
    insert_orders(pg, orders, 3001, 3200)
    ran = run_rivet("run", "-c", str(config), "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["exports"][0]["schema_drift"]["added"] == ["region: string"]
    # Rows exported before the column existed read it as NULL; the new rows carry it.
    expected = pg.execute(f"SELECT id, note, CASE WHEN id > 3000 THEN region END FROM {orders}").fetchall()
    assert table_rows(tmp_path, table_format) == collections.Counter(expected)
    assert run_rivet("validate", "-c", str(config)).returncode == 0


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_evolve_refuses_an_appending_run_that_retypes_a_column(pg, orders, tmp_path, table_format):
    export = {"table": orders, "mode": "incremental", "cursor_column": "id", "format": table_format}
    config = write_config(tmp_path, {**export, "on_schema_drift": "evolve"})
    assert run_rivet("run", "-c", str(config)).returncode == 0
    parts = sorted((tmp_path / "out").glob("*.parquet"))
    pg.execute(f"ALTER TABLE {orders} ALTER COLUMN note TYPE int USING length(note)")
    insert_orders_with_int_note = f"INSERT INTO {orders} VALUES (3001, 1, now(), 7)"
    pg.execute(insert_orders_with_int_note)
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 4
    assert "an appending run cannot remove or retype one" in ran.stderr
    assert sorted((tmp_path / "out").glob("*.parquet")) == parts


def test_evolve_needs_a_table_format(tmp_path):
    config = write_config(tmp_path, {"table": "t", "format": "parquet", "on_schema_drift": "evolve"})
    checked = run_rivet("check", "--config-only", "-c", str(config))
    assert checked.returncode == 2
    assert "on_schema_drift: evolve needs format: delta or iceberg" in checked.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_a_destination_the_table_format_cannot_write_to_is_refused_before_reading(orders, tmp_path, table_format):
    config = write_config(tmp_path, {"table": orders, "format": table_format})
    doc = json.loads(config.read_text())
    doc["exports"][0]["destination"] = {"url": f"memory://lake/{table_format}"}
    config.write_text(json.dumps(doc))
    ran = run_rivet("run", "-c", str(config), "--json")
    assert ran.returncode == 2
    assert f"format: {table_format} is written to local disk or S3 for now" in ran.stderr
    assert json.loads(ran.stdout)["exports"][0]["rows"] == 0


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_an_export_result_reads_the_table_its_run_committed(pg, orders, tmp_path, table_format, monkeypatch):
    import rivet

    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")
    options = {"iceberg": {"catalog_url": f"sqlite:///{tmp_path / 'catalog.db'}"}} if table_format == "iceberg" else {}
    export = {"mode": "incremental", "cursor_column": "id", "format": table_format, **options}
    source = {"type": "postgres", "url": PG_URL}
    first = rivet.export(source, table=orders, destination=str(tmp_path / "out"), state_dir=tmp_path, **export)
    insert_orders(pg, orders, 3001, 3050)
    second = rivet.export(source, table=orders, destination=str(tmp_path / "out"), state_dir=tmp_path, **export)
    assert second.rows == 50 and second.table is not None and second.table.version != first.table.version
    expected = source_rows(pg, orders)
    columns = ["id", "amount", "at", "note"]
    read = second.to_arrow()  # the whole table as the second run left it, not only its 50 rows
    assert collections.Counter(zip(*(read.column(c).to_pylist() for c in columns), strict=True)) == expected
    assert collections.Counter(second.scan().select(columns).collect().iter_rows()) == expected
    assert first.to_polars().height == 3000  # the table as the first run left it
    assert second.to_dict()["table"]["version"] == second.table.version
