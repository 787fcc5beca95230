"""Every mode into Delta and Iceberg tables, from PostgreSQL and MariaDB, locally and on S3 (moto).

Each case runs twice with the source changed in between (rows added, and for the
replacing modes rows deleted), then reads the table back through its own library and
polars and compares every value with the source.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import deltalake
import polars as pl
import pyiceberg.catalog as pyiceberg_catalog
import pytest

from tests.conftest import MYSQL_URL, PG_URL, my_query, s3_destination
from tests.outputs import run_rivet

COLUMNS = ["id", "amount", "at", "note"]
MODES = {
    "full": {},
    "incremental": {"cursor_column": "id"},
    "chunked": {"chunk_column": "id", "chunk_size": 300, "parallel": 2},
    "time_window": {"time_column": "at", "days_window": 3},
}
APPENDS = ("incremental", "time_window")


class Source:
    """One database's orders table: created, filled, changed and read, in its own SQL."""

    def __init__(self, kind: str, pg, my_conn, pg_table, my_table) -> None:
        self.kind = kind
        self.pg, self.my_conn = pg, my_conn
        if kind == "postgres":
            self.table = pg_table(
                "CREATE TABLE {t} (id int PRIMARY KEY, amount numeric(12,3), at timestamptz, note text)"
            )
        else:
            self.table = my_table(
                "CREATE TABLE {t} (id INT PRIMARY KEY, amount DECIMAL(12,3), at DATETIME(6), note VARCHAR(20))"
            )

    @property
    def settings(self) -> dict[str, str]:
        return {"type": self.kind, "url": PG_URL if self.kind == "postgres" else MYSQL_URL}

    def execute(self, sql: str) -> list[tuple]:
        if self.kind == "postgres":
            cursor = self.pg.execute(sql)
            return cursor.fetchall() if cursor.description else []
        return my_query(self.my_conn, sql)

    def insert(self, first: int, last: int) -> None:
        # Times within the last day (time_window reads them), ascending with the id.
        if self.kind == "postgres":
            self.execute(
                f"INSERT INTO {self.table} SELECT i, i * 1.125, now() - interval '1 day' + i * interval '1 second', "
                f"CASE WHEN i % 7 = 0 THEN NULL ELSE 'n' || i END FROM generate_series({first}, {last}) i"
            )
            return
        values = ",".join(
            f"({i}, {i} * 1.125, UTC_TIMESTAMP(6) - INTERVAL 1 DAY + INTERVAL {i} SECOND, "
            f"{'NULL' if i % 7 == 0 else repr(f'n{i}')})"
            for i in range(first, last + 1)
        )
        self.execute(f"INSERT INTO {self.table} VALUES {values}")

    def rows(self) -> collections.Counter:
        return collections.Counter(tuple(r) for r in self.execute(f"SELECT id, amount, at, note FROM {self.table}"))


@pytest.fixture(
    params=[pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)]
)
def source(request) -> Source:
    kind = request.param
    if kind == "postgres":
        return Source(kind, request.getfixturevalue("pg"), None, request.getfixturevalue("pg_table"), None)
    return Source(kind, None, request.getfixturevalue("my_conn"), None, request.getfixturevalue("my_table"))


def destination(where: str, request, name: str, tmp_path: Path) -> tuple[dict, dict]:
    """The export's destination, and the storage settings a reader of the table needs."""
    if where == "local":
        return {"type": "local", "path": str(tmp_path / "out")}, {}
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    settings = {"key": "testing", "secret": "testing", "endpoint": endpoint, "bucket": bucket, "prefix": name}
    return s3_destination(bucket, endpoint, name), settings


def read_table(table_format: str, tmp_path: Path, s3: dict) -> tuple[collections.Counter, collections.Counter]:
    """The table's rows through its own library, and through polars."""
    options = {}
    if s3:
        options = {
            "AWS_ACCESS_KEY_ID": s3["key"],
            "AWS_SECRET_ACCESS_KEY": s3["secret"],
            "AWS_ENDPOINT_URL": s3["endpoint"],
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
    if table_format == "delta":
        uri = f"s3://{s3['bucket']}/{s3['prefix']}" if s3 else str(tmp_path / "out")
        found = deltalake.DeltaTable(uri, storage_options=options).to_pyarrow_table(columns=COLUMNS)
        frame = pl.read_delta(uri, storage_options=options).select(COLUMNS)
    else:
        properties = {"uri": f"sqlite:///{tmp_path / '.rivet_iceberg.db'}"}
        if s3:
            properties |= {
                "s3.endpoint": s3["endpoint"],
                "s3.access-key-id": s3["key"],
                "s3.secret-access-key": s3["secret"],
                "s3.region": "us-east-1",
            }
        table = pyiceberg_catalog.load_catalog("rivet", type="sql", **properties).load_table(("rivet", "orders"))
        found = table.scan(selected_fields=tuple(COLUMNS)).to_arrow()
        frame = pl.scan_iceberg(table, storage_options=options or None).select(COLUMNS).collect()
    by_library = collections.Counter(zip(*(found.column(c).to_pylist() for c in COLUMNS), strict=True))
    return by_library, collections.Counter(frame.iter_rows())


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("table_format", ["delta", "iceberg"])
@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_to_a_table(source, mode, table_format, where, request, tmp_path, monkeypatch):
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")
    source.insert(1, 1000)
    target, s3 = destination(where, request, f"lake/{source.kind}-{mode}-{table_format}", tmp_path)
    export = {"name": "orders", "table": source.table, "mode": mode, "format": table_format, "destination": target}
    config = tmp_path / "rivet.yaml"
    config.write_text(json.dumps({"source": source.settings, "exports": [{**export, **MODES[mode]}]}))
    env = {"RIVET_T_KEY": "testing", "RIVET_T_SECRET": "testing"}
    first = run_rivet("run", "-c", str(config), env=env)
    assert first.returncode == 0, first.stderr
    source.insert(1001, 1200)
    if mode not in APPENDS:
        source.execute(f"DELETE FROM {source.table} WHERE id % 10 = 3")  # a replacing run drops them
    second = run_rivet("run", "-c", str(config), "--json", env=env)
    assert second.returncode == 0, second.stderr
    expected = source.rows()
    by_library, by_polars = read_table(table_format, tmp_path, s3)
    assert by_library == expected
    assert by_polars == expected
    assert json.loads(second.stdout)["exports"][0]["table"]["version"] is not None
