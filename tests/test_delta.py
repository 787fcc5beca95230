"""format: delta: each run's parts in one Delta commit, read back by deltalake, polars and DuckDB."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from tests.chunkrun import kill_after_chunks, resume_and_check
from tests.conftest import MYSQL_URL, PG_URL, my_query, s3_destination
from tests.orders import insert_orders, source_rows
from tests.outputs import run_rivet

deltalake = pytest.importorskip("deltalake")
pl = pytest.importorskip("polars")


def write_config(home: Path, export: dict) -> Path:
    body = {"name": "orders", "format": "delta", "destination": {"type": "local", "path": str(home / "out")}, **export}
    config = home / "rivet.yaml"
    config.write_text(json.dumps({"source": {"type": "postgres", "url": PG_URL}, "exports": [body]}))
    return config


def delta_rows(path: Path, **options) -> collections.Counter:
    table = deltalake.DeltaTable(str(path), **options).to_pyarrow_table(columns=["id", "amount", "at", "note"])
    return collections.Counter(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def polars_rows(path: Path) -> collections.Counter:
    frame = pl.read_delta(str(path)).select("id", "amount", "at", "note")
    return collections.Counter(frame.iter_rows())


def duckdb_with_delta():
    duckdb = pytest.importorskip("duckdb")
    extension = pytest.importorskip("duckdb_extension_delta")
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
def test_incremental_runs_append_and_a_kill_before_the_commit_is_completed_by_the_next_run(pg, orders, tmp_path):
    config = write_config(tmp_path, {"table": orders, "mode": "incremental", "cursor_column": "id"})
    assert run_rivet("run", "-c", str(config)).returncode == 0
    insert_orders(pg, orders, 3001, 3500)
    killed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": "before_table_commit:crash"})
    assert killed.returncode != 0
    checked = run_rivet("validate", "-c", str(config), "--json")
    assert checked.returncode == 3
    problems = json.loads(checked.stdout)["exports"][0]["problems"]
    assert any("is in the manifest but not in the Delta table" in p for p in problems)
    out = tmp_path / "out"
    assert sum(delta_rows(out).values()) == 3000  # the killed run's rows are not in the table yet
    insert_orders(pg, orders, 3501, 3600)
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    assert delta_rows(out) == source_rows(pg, orders)  # every row once: the killed run's committed with the next
    assert len(commits(out)) == 2
    assert run_rivet("validate", "-c", str(config)).returncode == 0
    again = run_rivet("run", "-c", str(config))  # nothing new: nothing to commit
    assert again.returncode == 0 and len(commits(out)) == 2


@pytest.mark.postgres
def test_a_chunked_run_killed_midway_commits_once_when_resumed(pg, orders, slow, tmp_path):
    export = {
        "query": f"SELECT id, amount, at, note, {slow}(id, 0.002) AS slowed FROM {orders}",
        "mode": "chunked",
        "chunk_column": "id",
        "chunk_size": 300,
        "chunk_checkpoint": True,
        "parallel": 2,
        "max_file_size": "20KB",
    }
    config = write_config(tmp_path, export)
    before = kill_after_chunks(config, 2)
    out = tmp_path / "out"
    assert not (out / "_delta_log").exists()  # nothing committed: no table yet
    resume_and_check(config, before)
    assert delta_rows(out) == source_rows(pg, orders)
    assert len(commits(out)) == 1


@pytest.mark.postgres
def test_a_delta_table_on_s3(pg, orders, s3_bucket, s3_endpoint, tmp_path):
    destination = s3_destination(s3_bucket, s3_endpoint, "lake/orders")
    config = write_config(tmp_path, {"table": orders, "mode": "incremental", "cursor_column": "id"})
    doc = json.loads(config.read_text())
    doc["exports"][0]["destination"] = destination
    config.write_text(json.dumps(doc))
    env = {"RIVET_T_KEY": "testing", "RIVET_T_SECRET": "testing"}
    assert run_rivet("run", "-c", str(config), env=env).returncode == 0
    insert_orders(pg, orders, 3001, 3100)
    ran = run_rivet("run", "-c", str(config), env=env)
    assert ran.returncode == 0, ran.stderr
    options = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    uri = f"s3://{s3_bucket}/lake/orders"
    table = deltalake.DeltaTable(uri, storage_options=options)
    assert table.version() == 1
    rows = table.to_pyarrow_table(columns=["id", "amount", "at", "note"])
    found = collections.Counter(zip(*(rows.column(c).to_pylist() for c in rows.column_names), strict=True))
    assert found == source_rows(pg, orders)


@pytest.mark.mysql
def test_a_mariadb_table_to_delta(my_conn, my_table, tmp_path):
    table = my_table("CREATE TABLE {t} (id INT PRIMARY KEY, price DECIMAL(10,2), at DATETIME(6), note VARCHAR(20))")
    values = ",".join(
        f"({i}, {i}.25, '2026-01-01 00:00:00.{i:06d}', {'NULL' if i % 9 == 0 else repr(f'n{i}')})"
        for i in range(1, 801)
    )
    my_query(my_conn, f"INSERT INTO {table} VALUES {values}")
    config = tmp_path / "rivet.yaml"
    export = {"name": "prices", "table": table, "format": "delta", "destination": {"type": "local", "path": "out"}}
    config.write_text(json.dumps({"source": {"type": "mysql", "url": MYSQL_URL}, "exports": [export]}))
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    frame = pl.read_delta(str(tmp_path / "out"))
    expected = collections.Counter(my_query(my_conn, f"SELECT id, price, at, note FROM {table}"))
    assert collections.Counter(frame.select("id", "price", "at", "note").iter_rows()) == expected


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
    assert "partition column region holds an empty text, which Delta reads back as NULL" in ran.stderr
    assert not (tmp_path / "out" / "_delta_log").exists()
    assert not list((tmp_path / "out").rglob("*.parquet"))
