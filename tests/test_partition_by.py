"""partition_by: Hive-style col=value/ folders, read back and compared with the source."""

from __future__ import annotations

import collections
import datetime as dt
import json
import textwrap
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rivet.errors import ConfigError
from rivet.output import open_part_writer, output_format
from rivet.output.partition import (
    HIVE_DEFAULT_PARTITION,
    MAX_OPEN_PARTITIONS,
    Partitioning,
    hive_escape,
    split_by_folder,
)
from tests.conftest import MYSQL_URL, my_query, pg_url
from tests.outputs import run_rivet

# -- folders of rows, without a database ---------------------------------------------------


def folders_of(partitioning: Partitioning, batch: pa.RecordBatch) -> list[str]:
    codes, names = partitioning.folders(batch)
    return [names[c] for c in codes.to_pylist()]


def test_values_are_escaped_into_one_folder_each():
    assert hive_escape("eu-west") == "eu-west"
    assert hive_escape("../../etc/passwd") == "..%2F..%2Fetc%2Fpasswd"
    assert hive_escape("a=b:c%d") == "a%3Db%3Ac%25d"
    assert hive_escape("tab\there") == "tab%09here"
    assert hive_escape("ünïcode") == "ünïcode"


def test_rows_get_the_folder_of_their_value_and_null_the_default_one():
    batch = pa.record_batch(
        {
            "at": pa.array(
                [dt.datetime(2024, 1, 31, 23, 59), None, dt.datetime(2024, 2, 1), dt.datetime(2024, 1, 31)],
                pa.timestamp("us", tz="UTC"),
            ),
            "region": ["eu", "us/east", None, ""],
        }
    )
    by_day = folders_of(Partitioning(("at",)), batch)
    assert by_day == ["at_day=2024-01-31", f"at_day={HIVE_DEFAULT_PARTITION}", "at_day=2024-02-01", "at_day=2024-01-31"]
    both = folders_of(Partitioning(("region", "at"), "month"), batch)
    assert both == [
        "region=eu/at_month=2024-01",
        f"region=us%2Feast/at_month={HIVE_DEFAULT_PARTITION}",
        f"region={HIVE_DEFAULT_PARTITION}/at_month=2024-02",
        f"region={HIVE_DEFAULT_PARTITION}/at_month=2024-01",
    ]
    dates = pa.record_batch({"d": pa.array([dt.date(2023, 12, 31)], pa.date32())})
    assert folders_of(Partitioning(("d",), "year"), dates) == ["d_year=2023"]
    # A date by day is the column's exact value: the folder is named after the column.
    assert folders_of(Partitioning(("d",)), dates) == ["d=2023-12-31"]
    other = pa.record_batch(
        {"ok": [True, None, False], "price": pa.array([Decimal("1.50"), Decimal("-2.00"), None], pa.decimal128(5, 2))}
    )
    assert folders_of(Partitioning(("ok", "price")), other) == [
        "ok=true/price=1.50",
        f"ok={HIVE_DEFAULT_PARTITION}/price=-2.00",
        f"ok=false/price={HIVE_DEFAULT_PARTITION}",
    ]


def test_split_keeps_the_order_of_rows_within_a_folder():
    batch = pa.record_batch({"k": [3, 1, 3, 2, 1, 3], "v": [0, 1, 2, 3, 4, 5]})
    pieces = {f: b.column(1).to_pylist() for f, b in split_by_folder(batch, *Partitioning(("k",)).folders(batch))}
    assert pieces == {"k=3": [0, 2, 5], "k=1": [1, 4], "k=2": [3]}


def test_more_partitions_than_open_files_write_every_row_once_in_few_files(tmp_path):
    schema = pa.schema([("k", pa.int64()), ("v", pa.int64())])
    serial = iter(range(100_000))
    writer = open_part_writer(
        output_format("parquet"),
        schema,
        lambda _n: tmp_path / f"staged-{next(serial)}.parquet",
        None,
        partitioning=Partitioning(("k",)),
    )
    keys, rounds = MAX_OPEN_PARTITIONS + 10, 6
    for round_ in range(rounds):  # every batch meets every partition: more than can stay open
        writer.write(pa.record_batch({"k": list(range(keys)), "v": [round_ * keys + k for k in range(keys)]}, schema))
    parts = writer.close()
    # Past the limit, each batch finishes one file per partition beyond it, not every file.
    assert len({p.folder for p in parts}) == keys
    assert keys < len(parts) <= keys + rounds * (keys - MAX_OPEN_PARTITIONS)
    rows = []
    for part in parts:
        table = pq.read_table(part.path)
        assert part.rows == table.num_rows
        assert set(table.column("k").to_pylist()) == {int(part.folder.removeprefix("k="))}
        rows += table.column("v").to_pylist()
    assert sorted(rows) == list(range(rounds * keys))


def test_a_column_that_cannot_name_a_folder_is_refused():
    schema = pa.schema([("f", pa.float64()), ("n", pa.int32()), ("t", pa.timestamp("us"))])
    with pytest.raises(ConfigError, match="'f' is double; partition by a date"):
        Partitioning(("f",)).check(schema, "e")
    with pytest.raises(ConfigError, match="partition_granularity applies to date and timestamp columns; 'n' is int32"):
        Partitioning(("n",), "month").check(schema, "e")
    with pytest.raises(ConfigError, match="'missing' is not in the output"):
        Partitioning(("missing",)).check(schema, "e")
    Partitioning(("t", "n"), "hour").check(schema, "e")
    clash = pa.schema([("t", pa.timestamp("us")), ("t_day", pa.string())])
    with pytest.raises(ConfigError, match=r"would be named t_day=\.\.\., which is also a column"):
        Partitioning(("t",)).check(clash, "e")


# -- exports ----------------------------------------------------------------------------


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.parquet") if not p.name.startswith("."))


def _read_partitioned(out: Path, columns: list[str]) -> collections.Counter:
    """Every row of every data file, checked to sit in the folder its values name."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(str(out / p["name"]) for p in manifest["parts"]) == [str(p) for p in _files(out)]
    rows: collections.Counter = collections.Counter()
    for path in _files(out):
        table = pq.read_table(path)
        rows.update(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
        folder = path.parent.relative_to(out).as_posix()
        assert folder != ".", f"{path} is not in a partition folder"
        batch = table.combine_chunks().to_batches()[0]
        assert set(folders_of(Partitioning(*_partitioning(manifest)), batch)) == {folder}, path
    return rows


def _partitioning(manifest: dict) -> tuple[tuple[str, ...], str | None]:
    return tuple(manifest["partition_by"]), manifest["partition_granularity"]


@pytest.mark.postgres
def test_a_full_export_lands_in_one_folder_per_day_and_value(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, at timestamptz, region text, amount numeric(10,2))")
    pg.execute(
        f"INSERT INTO {table} SELECT i, timestamptz '2024-01-30 22:00+00' + i * interval '37 minutes', "
        "(ARRAY['eu', 'us/east', '../up', NULL])[1 + i % 4], i * 1.25 FROM generate_series(1, 400) i"
    )
    pg.execute(f"UPDATE {table} SET at = NULL WHERE id % 50 = 0")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - name: p
                table: {table}
                partition_by: [region, at]
                destination: {{type: local, path: "out/{{partition}}/"}}
            """
        )
    )
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "out"
    source = collections.Counter(
        (i, a, r, m) for i, a, r, m in pg.execute(f"SELECT id, at, region, amount FROM {table}").fetchall()
    )
    assert _read_partitioned(out, ["id", "at", "region", "amount"]) == source
    folders = {p.parent.relative_to(out).as_posix() for p in _files(out)}
    assert "region=us%2Feast/at_day=2024-01-31" in folders and "region=..%2Fup/at_day=2024-01-31" in folders
    assert any(f.startswith(f"region={HIVE_DEFAULT_PARTITION}/at_day=2024-") for f in folders)
    assert any(f.endswith(f"/at_day={HIVE_DEFAULT_PARTITION}") for f in folders)
    assert not any(".." in p.relative_to(out).parts for p in out.rglob("*"))
    # DuckDB takes partition keys from the folders by default: every exact value stays.
    read = duckdb.sql(f"""SELECT id, "at", region, amount, at_day FROM read_parquet('{out}/**/*.parquet')""")
    rows = read.fetchall()
    assert collections.Counter(r[:4] for r in rows) == source
    assert all(r[4] == (r[1].astimezone(dt.timezone.utc).date() if r[1] else None) for r in rows)
    assert run_rivet("validate", "-c", str(config)).returncode == 0

    # A second run replaces the first: its parts are gone from every folder.
    pg.execute(f"DELETE FROM {table} WHERE region = 'eu'")
    assert run_rivet("run", "-c", str(config)).returncode == 0
    source = collections.Counter(pg.execute(f"SELECT id, at, region, amount FROM {table}").fetchall())
    assert _read_partitioned(out, ["id", "at", "region", "amount"]) == source


@pytest.mark.postgres
def test_a_parallel_chunked_export_partitions_by_month(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, d date, pad text)")
    pg.execute(
        f"INSERT INTO {table} SELECT i, date '2023-11-01' + (i * 7919) % 150, md5(i::text) "
        "FROM generate_series(1, 6000) i"
    )
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - name: m
                table: {table}
                mode: chunked
                chunk_column: id
                chunk_size: 1000
                parallel: 2
                chunk_checkpoint: true
                partition_by: d
                partition_granularity: month
                destination: out
            """
        )
    )
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "out"
    source = collections.Counter(pg.execute(f"SELECT id, d, pad FROM {table}").fetchall())
    assert _read_partitioned(out, ["id", "d", "pad"]) == source
    assert {p.parent.name for p in _files(out)} == {
        f"d_month={m}" for m in ("2023-11", "2023-12", "2024-01", "2024-02", "2024-03")
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(p["chunks"] for p in manifest["parts"])
    assert run_rivet("reconcile", "-c", str(config), "-e", "m").returncode == 0


@pytest.mark.mysql
def test_incremental_runs_on_mariadb_append_into_the_partition_folders(my_table, my_conn, tmp_path):
    table = my_table("CREATE TABLE {t} (id int PRIMARY KEY, kind varchar(10), price decimal(8,2))")
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", [(i, f"k{i % 3}", i / 4) for i in range(1, 101)])
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: mysql, url: "{MYSQL_URL}"}}\nexports:\n'
        f"  - {{name: inc, table: {table}, mode: incremental, cursor_column: id, partition_by: kind, "
        "destination: out}\n"
    )
    assert run_rivet("run", "-c", str(config)).returncode == 0
    with my_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", [(i, "new", 1) for i in range(101, 111)])
    assert run_rivet("run", "-c", str(config)).returncode == 0
    out = tmp_path / "out"
    source = collections.Counter(
        (i, k, Decimal(p)) for i, k, p in my_query(my_conn, f"SELECT id, kind, price FROM {table}")
    )
    assert _read_partitioned(out, ["id", "kind", "price"]) == source
    assert {p.parent.name for p in _files(out)} == {"kind=k0", "kind=k1", "kind=k2", "kind=new"}


def _config_error(tmp_path: Path, export: str) -> str:
    config = tmp_path / "rivet.yaml"
    config.write_text(f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n  - {export}\n')
    checked = run_rivet("check", "-c", str(config), "--config-only")
    assert checked.returncode == 2
    return checked.stderr


def test_partition_settings_that_cannot_work_are_refused(tmp_path):
    assert "{partition} needs partition_by" in _config_error(
        tmp_path, '{name: a, table: t, destination: "out/{partition}"}'
    )
    assert "must be the last folder of the path" in _config_error(
        tmp_path, '{name: a, table: t, partition_by: d, destination: "out/{partition}/x"}'
    )
    assert "partition_granularity requires partition_by" in _config_error(
        tmp_path, "{name: a, table: t, partition_granularity: day, destination: out}"
    )
    assert "partition_by does not apply" in _config_error(
        tmp_path, "{name: a, table: t, partition_by: d, destination: {type: stdout}}"
    )


@pytest.mark.postgres
def test_a_float_partition_column_fails_before_anything_is_written(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, f float8)")
    pg.execute(f"INSERT INTO {table} VALUES (1, 0.1)")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n'
        f"  - {{name: f, table: {table}, partition_by: f, destination: out}}\n"
    )
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 2 and "partition_by column 'f' is double" in ran.stderr, ran.stderr
    assert _files(tmp_path / "out") == []


@pytest.mark.mysql
def test_a_killed_partitioned_chunked_run_resumes_into_the_same_folders(my_table, my_conn, tmp_path):
    from tests.chunkrun import kill_after_chunks, resume_and_check, slow_mysql_chunked_export
    from tests.sources import numbers

    table = my_table(
        "CREATE TABLE {t} (id INT PRIMARY KEY, h CHAR(32));\n"
        f"INSERT INTO {{t}} SELECT i, MD5(i) FROM ({numbers(12000)}) AS n"
    )
    config = tmp_path / "rivet.yaml"
    export = slow_mysql_chunked_export(table, "id, h, id % 4 AS k", extra="  partition_by: k\n")
    config.write_text(f'source:\n  type: mysql\n  url: "{MYSQL_URL}"\nexports:\n' + textwrap.indent(export, "  "))
    before = kill_after_chunks(config, 6)
    assert 6 <= len(before) < 24
    resume_and_check(config, before)
    source = collections.Counter(my_query(my_conn, f"SELECT id, h, id % 4 FROM {table}"))
    assert _read_partitioned(tmp_path / "out", ["id", "h", "k"]) == source


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("values", "why"),
    [
        ("'EU', 'eu'", "differ only in letter case"),
        ("'café', 'cafe' || chr(769)", "Unicode normalisation"),  # é composed, and e + combining acute
        ("repeat('x', 300), 'y'", "more than the 255 a file system takes"),
    ],
    ids=["case", "normalisation", "length"],
)
def test_partition_folders_storage_would_merge_or_refuse_fail_before_publishing(pg, tmp_path, values, why):
    config = tmp_path / "rivet.yaml"
    query = f"SELECT i AS id, (ARRAY[{values}])[1 + i % 2] AS region FROM generate_series(1, 100) i"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n'
        f'  - {{name: p, query: "{query}", partition_by: region, destination: out}}\n'
    )
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 3 and why in ran.stderr, ran.stderr
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists() and not (out / "_SUCCESS").exists()
    assert not list(out.rglob("*.parquet"))


@pytest.mark.postgres
def test_the_documented_reads_of_each_reader_give_every_value_back_exactly(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, region text, amount numeric(10,2))")
    pg.execute(f"INSERT INTO {table} VALUES (1, '', 1.50), (2, NULL, 1.50), (3, 'eu', 2.25), (4, 'eu', NULL)")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n'
        f"  - {{name: p, table: {table}, partition_by: [region, amount], destination: out}}\n"
    )
    assert run_rivet("run", "-c", str(config)).returncode == 0
    out = tmp_path / "out"
    folders = sorted({str(p.parent.relative_to(out)) for p in out.rglob("*.parquet")})
    assert folders == [  # '' and NULL share Hive's default folder: only the files tell them apart
        "region=__HIVE_DEFAULT_PARTITION__/amount=1.50",
        "region=eu/amount=2.25",
        "region=eu/amount=__HIVE_DEFAULT_PARTITION__",
    ]
    source = sorted(pg.execute(f"SELECT id, region, amount FROM {table}").fetchall())
    glob = f"{out}/**/*.parquet"
    reads = {
        "duckdb": duckdb.sql(
            f"SELECT id, region, amount FROM read_parquet('{glob}', hive_partitioning = false)"
        ).fetchall(),
        "polars": pl.scan_parquet(glob).select("id", "region", "amount").collect().rows(),
        "pyarrow": [
            tuple(r.values())
            for r in pq.read_table(sorted(str(p) for p in out.rglob("*.parquet")), partitioning=None).to_pylist()
        ],
    }
    for reader, rows in reads.items():
        assert sorted((i, r, a) for i, r, a in rows) == source, reader
