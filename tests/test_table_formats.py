"""What Delta and Iceberg exports share: commits that survive kills, schema evolution, typed columns,
results read from the table, other storage, and refusals before reading."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import deltalake
import pytest

from tests.chunkrun import kill_after_chunks, resume_and_check
from tests.conftest import MYSQL_URL, PG_URL, my_query, s3_destination
from tests.orders import insert_orders, orders_config, source_rows
from tests.outputs import assert_failpoint_ended, run_rivet
from tests.test_iceberg import iceberg_rows, load_table, load_table_or_none

ORDERS = ["id", "amount", "at", "note"]


def table_rows(home: Path, table_format: str, columns: list[str] = ORDERS) -> collections.Counter:
    """The rows of the export's table at ``home/out`` (its catalog beside the config)."""
    if table_format == "delta":
        found = deltalake.DeltaTable(str(home / "out")).to_pyarrow_table(columns=columns)
    else:
        found = load_table(home).scan(selected_fields=tuple(columns)).to_arrow()
    return collections.Counter(zip(*(found.column(c).to_pylist() for c in columns), strict=True))


def commit_count(home: Path, table_format: str) -> int:
    """Delta commits, or Iceberg snapshots."""
    if table_format == "delta":
        return len(deltalake.DeltaTable(str(home / "out")).history())
    return len(load_table(home).snapshots())


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_incremental_runs_append_and_a_kill_before_the_commit_is_completed_by_the_next_run(
    pg, orders, tmp_path, table_format
):
    config = orders_config(tmp_path, {"table": orders, "mode": "incremental", "cursor_column": "id"}, fmt=table_format)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    insert_orders(pg, orders, 3001, 3500)
    killed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": "before_table_commit:crash"})
    assert_failpoint_ended(killed, "before_table_commit:crash", -9)
    assert sum(table_rows(tmp_path, table_format).values()) == 3000  # the killed run's rows are not in it yet
    checked = run_rivet("validate", "-c", str(config), "--json")
    assert checked.returncode == 3
    problems = json.loads(checked.stdout)["exports"][0]["problems"]
    kind = "Delta" if table_format == "delta" else "Iceberg"
    assert any(f"is in the manifest but not in the {kind} table" in p for p in problems)
    insert_orders(pg, orders, 3501, 3600)
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    assert table_rows(tmp_path, table_format) == source_rows(pg, orders)  # every row once
    assert commit_count(tmp_path, table_format) == 2  # the killed run's parts went into the next commit
    assert run_rivet("validate", "-c", str(config)).returncode == 0
    again = run_rivet("run", "-c", str(config))  # nothing new: nothing to commit
    assert again.returncode == 0 and commit_count(tmp_path, table_format) == 2


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_a_chunked_run_killed_midway_commits_once_when_resumed(pg, orders, slow, tmp_path, table_format):
    export = {
        "query": f"SELECT id, amount, at, note, {slow}(id, 0.002) AS slowed FROM {orders}",
        "mode": "chunked",
        "chunk_column": "id",
        "chunk_size": 300,
        "chunk_checkpoint": True,
        "parallel": 2,
        "max_file_size": "20KB",
    }
    config = orders_config(tmp_path, export, fmt=table_format)
    before = kill_after_chunks(config, 2)
    assert not (tmp_path / "out" / "_delta_log").exists()  # nothing committed: no table yet
    assert not (tmp_path / ".rivet_iceberg.db").exists() or load_table_or_none(tmp_path) is None
    resume_and_check(config, before)
    assert table_rows(tmp_path, table_format) == source_rows(pg, orders)
    assert commit_count(tmp_path, table_format) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_evolve_adds_a_new_column_to_an_appended_table(pg, orders, tmp_path, table_format):
    export = {"table": orders, "mode": "incremental", "cursor_column": "id"}
    config = orders_config(tmp_path, {**export, "on_schema_drift": "evolve"}, fmt=table_format)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    pg.execute(f"ALTER TABLE {orders} ADD COLUMN region text DEFAULT 'eu'")
    insert_orders(pg, orders, 3001, 3200)
    ran = run_rivet("run", "-c", str(config), "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["exports"][0]["schema_drift"]["added"] == ["region: string"]
    # Rows exported before the column existed read it as NULL; the new rows carry it.
    expected = pg.execute(f"SELECT id, note, CASE WHEN id > 3000 THEN region END FROM {orders}").fetchall()
    assert table_rows(tmp_path, table_format, ["id", "note", "region"]) == collections.Counter(expected)
    assert run_rivet("validate", "-c", str(config)).returncode == 0


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_evolve_refuses_an_appending_run_that_retypes_a_column(pg, orders, tmp_path, table_format):
    export = {"table": orders, "mode": "incremental", "cursor_column": "id"}
    config = orders_config(tmp_path, {**export, "on_schema_drift": "evolve"}, fmt=table_format)
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
    config = orders_config(tmp_path, {"table": "t", "on_schema_drift": "evolve"}, fmt="parquet")
    checked = run_rivet("check", "--config-only", "-c", str(config))
    assert checked.returncode == 2
    assert "on_schema_drift: evolve needs format: delta or iceberg" in checked.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_a_destination_the_table_format_cannot_write_to_is_refused_before_reading(orders, tmp_path, table_format):
    config = orders_config(tmp_path, {"table": orders}, fmt=table_format)
    doc = json.loads(config.read_text())
    doc["exports"][0]["destination"] = {"url": f"memory://lake/{table_format}"}
    config.write_text(json.dumps(doc))
    ran = run_rivet("run", "-c", str(config), "--json")
    assert ran.returncode == 2
    assert f"format: {table_format} is written to local disk, S3" in ran.stderr
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


@pytest.mark.mysql
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_mariadb_incremental_runs_killed_at_the_commit_append_each_row_once(my_conn, my_table, tmp_path, table_format):
    table = my_table("CREATE TABLE {t} (id INT PRIMARY KEY, price DECIMAL(10,2), at DATETIME(6), note VARCHAR(20))")

    def insert(first: int, last: int) -> None:
        values = ",".join(
            f"({i}, {i}.25, '2026-01-01 00:00:00.{i:06d}', {'NULL' if i % 9 == 0 else repr(f'n{i}')})"
            for i in range(first, last + 1)
        )
        my_query(my_conn, f"INSERT INTO {table} VALUES {values}")

    insert(1, 500)
    export = {"table": table, "mode": "incremental", "cursor_column": "id"}
    config = orders_config(tmp_path, export, {"type": "mysql", "url": MYSQL_URL}, fmt=table_format)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    insert(501, 700)
    killed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": "before_table_commit:crash"})
    assert_failpoint_ended(killed, "before_table_commit:crash", -9)
    insert(701, 720)
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    expected = collections.Counter(my_query(my_conn, f"SELECT id, price, at, note FROM {table}"))
    assert table_rows(tmp_path, table_format, ["id", "price", "at", "note"]) == expected
    assert commit_count(tmp_path, table_format) == 2  # the killed run's parts went into the next run's commit


def two_incremental_runs(pg, orders: str, home: Path, table_format: str, destination: dict) -> tuple[Path, str]:
    """An incremental export of ``orders`` into a table at ``destination``, run, then run again after
    100 more rows; the config and the second run's stderr."""
    config = orders_config(home, {"table": orders, "mode": "incremental", "cursor_column": "id"}, fmt=table_format)
    doc = json.loads(config.read_text())
    doc["exports"][0]["destination"] = destination
    config.write_text(json.dumps(doc))
    assert run_rivet("run", "-c", str(config)).returncode == 0
    insert_orders(pg, orders, 3001, 3100)
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    return config, ran.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_a_table_on_azure_blob_storage(pg, orders, azure, tmp_path, table_format):
    destination = {**azure, "prefix": f"lake/{table_format}-{tmp_path.name}"}
    two_incremental_runs(pg, orders, tmp_path, table_format, destination)
    location = f"abfs://{azure['container']}/lake/{table_format}-{tmp_path.name}"
    connection = azure["storage_options"]["connection_string"]
    columns = ["id", "amount", "at", "note"]
    if table_format == "delta":
        fields = dict(item.split("=", 1) for item in connection.split(";") if "=" in item)
        options = {
            "AZURE_STORAGE_ACCOUNT_NAME": fields["AccountName"],
            "AZURE_STORAGE_ACCOUNT_KEY": fields["AccountKey"],
            "AZURE_ENDPOINT": fields["BlobEndpoint"],
            "AZURE_ALLOW_HTTP": "true",
        }
        table = deltalake.DeltaTable(location, storage_options=options)
        assert len(table.history()) == 2
        found = table.to_pyarrow_table(columns=columns)
    else:
        table = load_table(tmp_path, **{"adls.connection-string": connection})
        assert table.location() == location and len(table.snapshots()) == 2
        found = table.scan(selected_fields=tuple(columns)).to_arrow()
    rows = collections.Counter(zip(*(found.column(c).to_pylist() for c in columns), strict=True))
    assert rows == source_rows(pg, orders)


@pytest.mark.postgres
def test_an_iceberg_table_on_google_cloud_storage(pg, orders, gcs, tmp_path, monkeypatch):
    config, said = two_incremental_runs(pg, orders, tmp_path, "iceberg", {**gcs, "prefix": f"lake/{tmp_path.name}"})
    assert "Warning" not in said
    assert run_rivet("validate", "-c", str(config)).returncode == 0
    # Read back by pyiceberg through gcsfs, as any reader of the catalog would (plain HTTP to the emulator).
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    properties = {
        "py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO",
        "gcs.service.host": gcs["endpoint"],
        "gcs.oauth2.token": "anon",
        "gcs.project-id": "",
    }
    table = load_table(tmp_path, **properties)
    assert table.location() == f"gs://{gcs['bucket']}/lake/{tmp_path.name}" and len(table.snapshots()) == 2
    assert iceberg_rows(table, ORDERS) == source_rows(pg, orders)


TYPED = (
    "CREATE TABLE {t} (id int PRIMARY KEY, a int[], t text[], n numeric(38,10), ts timestamp, tz timestamptz, "
    "d date, b bytea, u uuid, j jsonb, f float8, r real, bo bool, iv interval, sm smallint, big bigint, ch char(3))"
)
TYPED_ROWS = (
    "INSERT INTO {t} VALUES (1, '{{1,2,NULL}}', '{{a,NULL}}', 123456789.0123456789, '2024-01-01 01:02:03.456789', "
    "'2024-01-01 01:02:03.456789+02', '2024-01-01', '\\x0102', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
    """'{{"k": [1]}}', 1.5, 2.5, true, '1 day 2 hours', 7, 9007199254740993, 'ab'), """
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'Infinity', '-Infinity', NULL, NULL, NULL, NULL, NULL)"
)


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_every_type_reads_back_from_the_table_as_from_the_parquet_files(pg, pg_table, tmp_path, table_format):
    import rivet

    table = pg_table(TYPED)
    pg.execute(TYPED_ROWS.format(t=table))
    source = {"type": "postgres", "url": PG_URL}
    options = {"iceberg": {"catalog_url": f"sqlite:///{tmp_path / 'catalog.db'}"}} if table_format == "iceberg" else {}
    files = rivet.export(source, table=table, destination=str(tmp_path / "files")).to_arrow()
    written = rivet.export(source, table=table, destination=str(tmp_path / "table"), format=table_format, **options)
    from_table = written.to_arrow().select(files.column_names)
    assert from_table.sort_by("id").to_pylist() == files.sort_by("id").to_pylist()
    assert from_table.num_rows == 2


@pytest.mark.postgres
def test_a_type_delta_cannot_hold_is_refused_before_reading(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, at time)")
    config = orders_config(tmp_path, {"table": table}, fmt="delta")
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 2
    assert "column at is time64[us], and Delta has no such type" in ran.stderr
    assert len(ran.stderr.splitlines()) < 10  # the library's reason in one line, not its backtrace
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_an_export_result_reads_its_table_on_s3(
    orders, pg, s3_bucket, s3_endpoint, tmp_path, table_format, monkeypatch
):
    import rivet

    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")
    options = {"iceberg": {"catalog_url": f"sqlite:///{tmp_path / 'catalog.db'}"}} if table_format == "iceberg" else {}
    target = s3_destination(s3_bucket, s3_endpoint, f"lake/{table_format}")
    result = rivet.export(
        {"type": "postgres", "url": PG_URL}, table=orders, destination=target, format=table_format, **options
    )
    columns = ["id", "amount", "at", "note"]
    assert collections.Counter(result.scan().select(columns).collect().iter_rows()) == source_rows(pg, orders)
    assert result.to_arrow().num_rows == 3000


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_an_empty_part_is_listed_in_the_table_and_replaced_with_it(pg, pg_table, tmp_path, table_format):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, note text)")
    config = orders_config(tmp_path, {"table": table}, fmt=table_format)
    for _ in range(2):  # empty, then with rows: the empty part goes
        ran = run_rivet("run", "-c", str(config))
        assert ran.returncode == 0, ran.stderr
        checked = run_rivet("validate", "-c", str(config), "--json")
        assert json.loads(checked.stdout)["exports"][0]["problems"] == []
        pg.execute(f"INSERT INTO {table} SELECT i, 'n' || i FROM generate_series(1, 50) i ON CONFLICT DO NOTHING")
    expected = collections.Counter(pg.execute(f"SELECT id, note FROM {table}").fetchall())
    assert table_rows(tmp_path, table_format, ["id", "note"]) == expected
    assert commit_count(tmp_path, table_format) == 2


@pytest.mark.postgres
def test_an_empty_partition_text_is_refused_for_iceberg_too(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, region text)")
    pg.execute(f"INSERT INTO {table} VALUES (1, 'eu'), (2, ''), (3, NULL)")
    config = orders_config(tmp_path, {"table": table, "partition_by": "region"}, fmt="iceberg")
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode != 0
    assert "partition column region holds an empty text, which shares NULL's partition folder" in ran.stderr
    assert load_table_or_none(tmp_path) is None
    assert not list((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_evolve_with_meta_columns_adds_the_new_column_before_them(pg, orders, tmp_path, table_format):
    export = {"table": orders, "mode": "incremental", "cursor_column": "id", "on_schema_drift": "evolve"}
    config = orders_config(tmp_path, {**export, "meta_columns": {"exported_at": True}}, fmt=table_format)
    assert run_rivet("run", "-c", str(config)).returncode == 0
    pg.execute(f"ALTER TABLE {orders} ADD COLUMN region text DEFAULT 'eu'")
    insert_orders(pg, orders, 3001, 3100)
    for _ in range(2):  # the second run finds nothing new, and changes nothing
        ran = run_rivet("run", "-c", str(config))
        assert ran.returncode == 0, ran.stderr
    expected = pg.execute(f"SELECT id, note, CASE WHEN id > 3000 THEN region END FROM {orders}").fetchall()
    assert table_rows(tmp_path, table_format, ["id", "note", "region"]) == collections.Counter(expected)
    assert commit_count(tmp_path, table_format) == (3 if table_format == "delta" else 2)  # Delta: + the new column


def test_a_table_format_needs_a_folder_of_its_own(tmp_path):
    body = {"source": {"type": "postgres", "url": PG_URL}}
    body["exports"] = [
        {"name": "a", "table": "a", "format": "delta", "destination": {"type": "local", "path": "out"}},
        {"name": "b", "table": "b", "destination": {"type": "local", "path": "out"}},
    ]
    config = tmp_path / "rivet.yaml"
    config.write_text(json.dumps(body))
    checked = run_rivet("check", "--config-only", "-c", str(config))
    assert checked.returncode == 2
    assert "is shared with another export; a delta table is one export's folder" in checked.stderr


@pytest.mark.postgres
def test_a_relative_sqlite_catalog_is_beside_the_config_and_never_shown_with_a_password(orders, tmp_path):
    from rivet.output.tables.iceberg import IcebergTable

    config = orders_config(
        tmp_path, {"table": orders, "iceberg": {"catalog_url": "sqlite:///lake/catalog.db"}}, fmt="iceberg"
    )
    assert run_rivet("run", "-c", str(config)).returncode == 0
    assert (tmp_path / "lake" / "catalog.db").is_file()
    assert not Path("lake").exists()  # not in the directory rivet ran from
    table = IcebergTable("postgresql://lake:s3cr3t-pw@db/catalog", "rivet", "orders")
    assert "s3cr3t-pw" not in repr(table) and "s3cr3t-pw" not in table.shown


@pytest.mark.postgres
def test_exports_in_their_own_processes_report_their_tables(pg, orders, tmp_path):
    import rivet
    from rivet.errors import ConfigError

    body = {"source": {"type": "postgres", "url": PG_URL}}
    body["exports"] = [
        {"name": f"o_{f}", "table": orders, "format": f, "destination": {"type": "local", "path": f"out/{f}"}}
        for f in ("delta", "iceberg")
    ]
    config = tmp_path / "rivet.yaml"
    config.write_text(json.dumps(body))
    ran = run_rivet("run", "-c", str(config), "--parallel-export-processes", "--json")
    assert ran.returncode == 0, ran.stderr
    tables = {e["name"]: e["table"] for e in json.loads(ran.stdout)["exports"]}
    assert tables["o_delta"]["format"] == "delta" and tables["o_iceberg"]["format"] == "iceberg"
    assert tables["o_delta"]["version"] == 0 and tables["o_iceberg"]["version"] is not None
    result = rivet.run(config, parallel="processes")
    with pytest.raises(ConfigError, match="ran in its own process and committed to a delta table"):
        result["o_delta"].to_arrow()  # not only the run's own parts, silently


@pytest.mark.postgres
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
def test_destination_settings_the_library_would_not_get_are_refused_before_reading(orders, tmp_path, table_format):
    config = orders_config(tmp_path, {"table": orders}, fmt=table_format)
    doc = json.loads(config.read_text())
    doc["exports"][0]["destination"] = {"type": "s3", "bucket": "lake", "prefix": "orders", "aws_profile": "analytics"}
    config.write_text(json.dumps(doc))
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 2
    assert f"format: {table_format} cannot hand profile to" in ran.stderr
