"""The ways of turning a PostgreSQL or MariaDB table into Parquet that the benchmark compares.

Each method writes zstd level-1 Parquet where it can choose, and returns the rows
written. ``python bench/methods.py METHOD URL TABLE OUT`` runs one in its own
process and prints ``{"seconds", "rows", "bytes"}`` as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _parquet_files(out: Path) -> list[Path]:
    """The visible Parquet files under ``out`` (hidden staging files aside)."""
    return [p for p in out.rglob("*.parquet") if not p.name.startswith((".", "_"))]


def _dir_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in _parquet_files(out))


def rows_in_files(out: Path) -> int:
    """Rows in the Parquet files under ``out``, read from their footers: what a method really wrote."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in _parquet_files(out))


def copy_devnull(url: str, table: str, out: Path) -> int:
    """The floor: the server's own binary COPY to /dev/null (one backend)."""
    import psycopg

    with psycopg.connect(url) as conn:
        cur = conn.execute(f"COPY (SELECT * FROM {table}) TO '/dev/null' (FORMAT binary)")
        return int(cur.rowcount)


def plain(url: str) -> str:
    """``url`` without TLS, so every method reads over the same plain connection (libpq's
    default, ``prefer``, would give the peers TLS where the server offers it)."""
    if not url.startswith("postgres") or "sslmode=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}sslmode=disable"


def _rivet_source(url: str, engine: str = "native") -> dict[str, str]:
    if url.startswith("postgres"):
        return {"type": "postgres", "url": plain(url), "engine": engine}
    return {"type": "mysql", "url": url, "engine": engine}


def rivet_full(url: str, table: str, out: Path) -> int:
    """rivet, mode full: one connection, server-side cursor."""
    import rivet

    result = rivet.export(_rivet_source(url), table=table, destination=str(out), name=table)
    return result.rows


def rivet_delta(url: str, table: str, out: Path) -> int:
    """rivet, mode full, format delta: the same parts as ``rivet``, then one Delta commit."""
    import rivet

    result = rivet.export(_rivet_source(url), table=table, destination=str(out), name=table, format="delta")
    return result.rows


def rivet_iceberg(url: str, table: str, out: Path) -> int:
    """rivet, mode full, format iceberg: the same parts as ``rivet``, then one snapshot in a SQLite catalog."""
    import rivet

    catalog = {"catalog_url": f"sqlite:///{out / '_catalog.db'}"}
    result = rivet.export(
        _rivet_source(url), table=table, destination=str(out), name=table, format="iceberg", iceberg=catalog
    )
    return result.rows


def rivet_parallel(url: str, table: str, out: Path) -> int:
    """rivet, mode full with parallel: 2: page ranges of the table under one exported snapshot."""
    import rivet

    result = rivet.export(
        _rivet_source(url), table=table, destination=str(out), name=table, parallel=2, snapshot="consistent"
    )
    return result.rows


# About two dozen chunks per table, planned from the planner's statistics of the primary key.
CHUNK_ROWS = {"lineitem": 250_000, "content_items": 100_000, "events": 500_000}


def rivet_chunked(url: str, table: str, out: Path, engine: str = "native") -> int:
    """rivet, mode chunked on the primary key with parallel: 2 (native reader)."""
    import rivet

    rows = CHUNK_ROWS.get(table, 100_000)
    result = rivet.export(
        _rivet_source(url, engine),
        table=table,
        destination=str(out),
        name=table,
        mode="chunked",
        parallel=2,
        chunk_size=rows,
    )
    if result.engine != engine:
        raise RuntimeError(f"asked for the {engine} reader, {result.engine} read")
    return result.rows


# The primary key of each benchmark table: what a user names as chunk_column for a query.
CHUNK_KEYS = {"lineitem": "l_orderkey", "content_items": "id", "events": "id"}


def rivet_chunked_query(url: str, table: str, out: Path) -> int:
    """rivet, mode chunked with parallel: 2 over ``query: SELECT * FROM table`` (the form users write)."""
    import rivet

    result = rivet.export(
        _rivet_source(url),
        query=f"SELECT * FROM {table}",
        destination=str(out),
        name=table,
        mode="chunked",
        chunk_column=CHUNK_KEYS[table],
        parallel=2,
        chunk_size=CHUNK_ROWS.get(table, 100_000),
    )
    return result.rows


def rivet_keyset(url: str, table: str, out: Path) -> int:
    """rivet, mode chunked with chunk_by_key on the table's primary key (keyset chunks), parallel: 2."""
    import rivet

    result = rivet.export(
        _rivet_source(url),
        table=table,
        destination=str(out),
        name=table,
        mode="chunked",
        chunk_by_key=KEYSET_KEYS.get(table, CHUNK_KEYS.get(table, "id")),
        parallel=2,
        chunk_size=CHUNK_ROWS.get(table, 250_000),
    )
    return result.rows


# The unique key keyset chunks walk, where it is not the integer key of CHUNK_KEYS.
KEYSET_KEYS = {"lineitem_uuid": "id"}


# A date or timestamp column of each table and its bucket: events are in time order (one day at a
# time, 347 days); content_items and lineitem rows come in random order over 66 and 84 months.
PARTITIONS = {
    "events": ("ts", "day"),
    "content_items": ("created_at", "month"),
    "lineitem": ("l_shipdate", "month"),
}


def rivet_partitioned(url: str, table: str, out: Path) -> int:
    """rivet, mode full with ``partition_by`` on a date or timestamp column (Hive folders)."""
    import rivet

    column, granularity = PARTITIONS[table]
    result = rivet.export(
        _rivet_source(url),
        table=table,
        destination=str(out),
        name=table,
        partition_by=column,
        partition_granularity=granularity,
    )
    return result.rows


def rivet_chunked_cx(url: str, table: str, out: Path) -> int:
    """rivet, mode chunked with parallel: 2, every chunk read by connectorx (source.engine: connectorx)."""
    return rivet_chunked(url, table, out, engine="connectorx")


def mysql_floor(url: str, table: str, out: Path) -> int:
    """The MariaDB floor: the mariadb client streaming the table as text to /dev/null."""
    import subprocess
    from urllib.parse import urlsplit

    u = urlsplit(url)
    sql = f"SELECT * FROM {table}"
    args = ["mariadb", "--quick", "-h", u.hostname or "127.0.0.1", "-P", str(u.port or 3306)]
    args += ["-u", u.username or "root", u.path.lstrip("/"), "-e", sql]
    with open(os.devnull, "wb") as sink:
        subprocess.run(args, stdout=sink, check=True)
    count = subprocess.run([*args[:-1], f"SELECT count(*) FROM {table}", "-N"], capture_output=True, check=True)
    return int(count.stdout)


def duckdb_mysql(url: str, table: str, out: Path, threads: int = 2) -> int:
    """DuckDB 1.5.5's mysql scanner, COPY ... TO parquet (zstd), N threads."""
    from urllib.parse import urlsplit

    import duckdb
    import duckdb_extension_mysql_scanner as ext

    u = urlsplit(url)
    dsn = f"host={u.hostname} port={u.port or 3306} user={u.username or 'root'} database={u.path.lstrip('/')}"
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET threads = {threads}")
    con.execute(f"LOAD '{Path(ext.__file__).parent / 'extensions/v1.5.5/mysql_scanner.duckdb_extension'}'")
    con.execute(f"ATTACH '{dsn}' AS my (TYPE mysql, READ_ONLY)")
    target = out / (table + ".parquet")
    con.execute(f"COPY (SELECT * FROM my.{table}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
    row = con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()
    return int(row[0]) if row else 0


def connectorx_stream(url: str, table: str, out: Path) -> int:
    """connectorx arrow_stream (100k-row batches) into a pyarrow ParquetWriter."""
    import connectorx as cx
    import pyarrow.parquet as pq

    reader = cx.read_sql(plain(url), f"SELECT * FROM {table}", return_type="arrow_stream", batch_size=100_000)
    rows, writer = 0, None
    for batch in reader:
        if writer is None:
            writer = pq.ParquetWriter(out / f"{table}.parquet", batch.schema, compression="zstd", compression_level=1)
        writer.write_batch(batch)
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    return rows


def connectorx_partitioned(url: str, table: str, out: Path) -> int:
    """connectorx with 2 connections: its own split of the first (primary key) column, into one Parquet file."""
    import connectorx as cx
    import pyarrow.parquet as pq

    key = {"lineitem": "l_orderkey"}.get(table, "id")
    data = cx.read_sql(plain(url), f"SELECT * FROM {table}", return_type="arrow", partition_on=key, partition_num=2)
    pq.write_table(data, out / f"{table}.parquet", compression="zstd", compression_level=1)
    return int(data.num_rows)


def adbc_stream(url: str, table: str, out: Path) -> int:
    """ADBC PostgreSQL driver: fetch_record_batch into a pyarrow ParquetWriter."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow.parquet as pq

    rows = 0
    with adbc.connect(plain(url)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table}")
        reader = cur.fetch_record_batch()
        with pq.ParquetWriter(out / f"{table}.parquet", reader.schema, compression="zstd", compression_level=1) as w:
            for batch in reader:
                w.write_batch(batch)
                rows += batch.num_rows
    return rows


def duckdb_scanner(url: str, table: str, out: Path, threads: int = 2) -> int:
    """DuckDB 1.5.5's postgres scanner, COPY ... TO parquet (zstd), N threads."""
    from urllib.parse import urlparse

    import duckdb
    import duckdb_extension_postgres_scanner as ext

    u = urlparse(url)
    dsn = f"host={u.hostname} port={u.port or 5432} user={u.username} dbname={u.path.lstrip('/')} sslmode=disable"
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET threads = {threads}")
    con.execute(f"LOAD '{Path(ext.__file__).parent / 'extensions/v1.5.5/postgres_scanner.duckdb_extension'}'")
    con.execute(f"ATTACH '{dsn}' AS pg (TYPE postgres, READ_ONLY)")
    con.execute(
        f"COPY (SELECT * FROM pg.public.{table}) TO '{out / (table + '.parquet')}' (FORMAT parquet, COMPRESSION zstd)"
    )
    row = con.execute(f"SELECT count(*) FROM read_parquet('{out / (table + '.parquet')}')").fetchone()
    return int(row[0]) if row else 0


def polars_uri(url: str, table: str, out: Path) -> int:
    """polars read_database_uri (connectorx engine) then write_parquet (whole table in memory)."""
    import polars as pl

    frame = pl.read_database_uri(f"SELECT * FROM {table}", plain(url))
    frame.write_parquet(out / f"{table}.parquet", compression="zstd", compression_level=1)
    return frame.height


def rivet_read_polars(url: str, table: str, out: Path) -> tuple[int, Callable[[], int]]:
    """rivet.read_polars with parallel: 2 (into memory, no files)."""
    import rivet

    del out
    frame = rivet.read_polars(_rivet_source(url), table=table, parallel=2)
    return frame.height, lambda: _frame_bytes(frame)


def _frame_bytes(frame: Any) -> int:
    """What a polars frame holds: its buffers, exported to Arrow without a copy.

    ``estimated_size()`` counts text by its bytes and leaves out the 16-byte view each
    value has in polars, a third of lineitem's frame.
    """
    import pyarrow as pa

    return int(pa.table(frame).get_total_buffer_size())


def polars_read_cx(url: str, table: str, out: Path) -> tuple[int, Callable[[], int]]:
    """polars.read_database_uri with the connectorx engine (into memory, no files)."""
    import polars as pl

    del out
    frame = pl.read_database_uri(f"SELECT * FROM {table}", plain(url), engine="connectorx")
    return frame.height, lambda: _frame_bytes(frame)


def connectorx_arrow(url: str, table: str, out: Path) -> tuple[int, Callable[[], int]]:
    """connectorx.read_sql(return_type="arrow") (into memory, no files)."""
    import connectorx as cx

    del out
    result = cx.read_sql(plain(url), f"SELECT * FROM {table}", return_type="arrow")
    return int(result.num_rows), lambda: int(result.get_total_buffer_size())


# A method returns its rows, or, when it writes no files, its rows and a function that measures
# its result in memory (called after the peak RSS is read: measuring may allocate).
METHODS: dict[str, Callable[[str, str, Path], int | tuple[int, Callable[[], int]]]] = {
    "copy_devnull": copy_devnull,
    "rivet": rivet_full,
    "rivet_delta": rivet_delta,
    "rivet_iceberg": rivet_iceberg,
    "rivet_parallel": rivet_parallel,
    "rivet_chunked": rivet_chunked,
    "rivet_chunked_query": rivet_chunked_query,
    "rivet_chunked_cx": rivet_chunked_cx,
    "rivet_partitioned": rivet_partitioned,
    "rivet_read_polars": rivet_read_polars,
    "polars_read_cx": polars_read_cx,
    "connectorx_arrow": connectorx_arrow,
    "rivet_keyset": rivet_keyset,
    "mysql_floor": mysql_floor,
    "duckdb_mysql": duckdb_mysql,
    "connectorx": connectorx_stream,
    "connectorx_partitioned": connectorx_partitioned,
    "adbc": adbc_stream,
    "duckdb": duckdb_scanner,
    "polars": polars_uri,
}


def run_one(method: str, url: str, table: str, out: Path) -> dict[str, Any]:
    """Run ``method`` into a clean ``out`` and time only the work.

    ``bytes``: the output's size, or for a method that reads into memory a function that
    measures its result.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    done = METHODS[method](url, table, out)
    seconds = time.perf_counter() - start
    rows, nbytes = done if isinstance(done, tuple) else (done, _dir_bytes(out))
    return {"seconds": seconds, "rows": rows, "bytes": nbytes}


def peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM), which, unlike ru_maxrss, does not
    include the image of the parent that spawned it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def client_cpu_seconds() -> float:
    """User + system CPU of this process and the programs it ran (psql, mariadb)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    method, url, table, out = sys.argv[1:5]
    if method.startswith("rivet"):
        # What the rivet command does before pyarrow loads (rivet.cli.prepare_process).
        from rivet.cli import prepare_process

        prepare_process()
    result = run_one(method, url, table, Path(out))
    result["peak_rss_mb"] = peak_rss_mb()
    if callable(result["bytes"]):
        result["bytes"] = result["bytes"]()
    else:
        result["rows_in_files"] = rows_in_files(Path(out))
    result["client_cpu_s"] = client_cpu_seconds()
    shutil.rmtree(out, ignore_errors=True)
    os.write(1, (json.dumps(result) + "\n").encode())
