"""format: delta: each run's parts in one Delta commit, read back by deltalake, polars and DuckDB."""

from __future__ import annotations

import collections
import functools
import json
from pathlib import Path

import deltalake
import polars as pl
import pytest

from tests.orders import orders_config, source_rows
from tests.outputs import run_rivet

write_config = functools.partial(orders_config, fmt="delta")


def delta_rows(path: Path, **options) -> collections.Counter:
    table = deltalake.DeltaTable(str(path), **options).to_pyarrow_table(columns=["id", "amount", "at", "note"])
    return collections.Counter(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def polars_rows(path: Path) -> collections.Counter:
    frame = pl.read_delta(str(path)).select("id", "amount", "at", "note")
    return collections.Counter(frame.iter_rows())


def duckdb_with_delta():
    import duckdb
    import duckdb_extension_delta as extension

    connection = duckdb.connect()
    connection.execute(f"LOAD '{Path(extension.__file__).parent / 'extensions/v1.5.5/delta.duckdb_extension'}'")
    return connection


def commits(path: Path) -> list[str]:
    """The run id of each commit, oldest first."""
    return [h.get("rivet.run_id") for h in reversed(deltalake.DeltaTable(str(path)).history())]


@pytest.mark.postgres
def test_a_full_export_replaces_the_table_in_one_commit_each_run(pg, orders, tmp_path):
    config = write_config(tmp_path, {"table": orders})
    assert run_rivet("run", "-c", str(config)).returncode == 0
    pg.execute(f"DELETE FROM {orders} WHERE id > 2000")
    ran = run_rivet("run", "-c", str(config), "--json")
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "out"
    assert delta_rows(out) == source_rows(pg, orders)
    assert polars_rows(out) == source_rows(pg, orders)
    assert pl.read_delta(str(out)).schema["amount"] == pl.Decimal(12, 3)
    run_ids = [json.loads(ran.stdout)["exports"][0]["run_id"]]
    assert len(commits(out)) == 2 and commits(out)[-1] == run_ids[0]
    connection = duckdb_with_delta()
    found = connection.sql(f"SELECT id, amount, \"at\", note FROM delta_scan('{out}')").fetchall()
    assert collections.Counter(found) == source_rows(pg, orders)
    # The first run's version stays readable until the next run, which removes its parts.
    assert deltalake.DeltaTable(str(out), version=0).to_pyarrow_table().num_rows == 3000
    assert run_rivet("run", "-c", str(config)).returncode == 0
    live = {Path(u).name for u in deltalake.DeltaTable(str(out)).file_uris()}
    previous = {Path(u).name for u in deltalake.DeltaTable(str(out), version=1).file_uris()}
    assert {p.name for p in out.glob("*.parquet")} == live | previous
    assert run_rivet("validate", "-c", str(config)).returncode == 0


@pytest.mark.postgres
def test_a_full_run_with_a_new_column_replaces_the_tables_schema(pg, orders, tmp_path):
    config = write_config(tmp_path, {"table": orders})
    assert run_rivet("run", "-c", str(config)).returncode == 0
    pg.execute(f"ALTER TABLE {orders} ADD COLUMN region text DEFAULT 'eu'")
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    frame = pl.read_delta(str(tmp_path / "out"))
    assert frame.columns == ["id", "amount", "at", "note", "region"]
    assert frame.height == 3000 and set(frame["region"]) == {"eu"}


@pytest.mark.postgres
def test_partition_by_becomes_the_delta_tables_partition_columns(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, region text, day date, at timestamptz)")
    pg.execute(
        f"INSERT INTO {table} SELECT i, (ARRAY['eu', 'us', NULL, 'a/b=c%d'])[i % 4 + 1], date '2024-02-01' + i % 3, "
        "timestamptz '2024-01-30 22:00+00' + i * interval '37 minutes' FROM generate_series(1, 400) i"
    )
    config = write_config(tmp_path, {"table": table, "partition_by": ["region", "day"]})
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "out"
    assert deltalake.DeltaTable(str(out)).metadata().partition_columns == ["region", "day"]
    columns = ["id", "region", "day", "at"]
    expected = collections.Counter(pg.execute(f"SELECT id, region, day, at FROM {table}").fetchall())
    found = deltalake.DeltaTable(str(out)).to_pyarrow_table(columns=columns)
    assert collections.Counter(zip(*(found.column(c).to_pylist() for c in columns), strict=True)) == expected
    assert collections.Counter(pl.read_delta(str(out)).select(columns).iter_rows()) == expected
    connection = duckdb_with_delta()
    found = connection.sql(f"SELECT id, region, day, \"at\" FROM delta_scan('{out}')").fetchall()
    assert collections.Counter(found) == expected
    nulls = connection.sql(f"SELECT count(*) FROM delta_scan('{out}') WHERE region IS NULL").fetchone()[0]
    assert nulls == pg.execute(f"SELECT count(*) FROM {table} WHERE region IS NULL").fetchone()[0]
    # Partitioned otherwise, a run is refused before it publishes anything.
    doc = json.loads(config.read_text())
    doc["exports"][0]["partition_by"] = "day"
    config.write_text(json.dumps(doc))
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode != 0
    assert "is partitioned by ['region', 'day'], this export by ['day']" in ran.stderr
    assert len(commits(out)) == 1


@pytest.mark.postgres
def test_delta_refuses_a_bucketed_timestamp_and_an_empty_partition_text_before_publishing(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, region text, at timestamptz)")
    pg.execute(f"INSERT INTO {table} VALUES (1, 'eu', now()), (2, '', now())")
    config = write_config(tmp_path, {"table": table, "partition_by": "at"})
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 2
    assert "format: delta partitions by a column's exact value, and at would be bucketed into at_day" in ran.stderr
    config = write_config(tmp_path, {"table": table, "partition_by": "region"})
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode != 0
    assert "partition column region holds an empty text, which shares NULL" in ran.stderr
    assert not (tmp_path / "out" / "_delta_log").exists()
    assert not list((tmp_path / "out").rglob("*.parquet"))
