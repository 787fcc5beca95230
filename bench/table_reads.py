"""Reading what rivet wrote: plain Parquet vs the same parts as a Delta and an Iceberg table.

``python bench/table_reads.py [--scale full] [--repeat 5]``: lineitem is exported once
per format, then DuckDB and polars each run one aggregate over every row of each
(count, a sum of a decimal, the newest date), interleaved, median of ``--repeat``. The
ratio is each table's read time over the Parquet files' for the same reader: what
reading through the table's log costs (or saves). The results must agree, or it fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

from bench.fixtures import SCALES, ensure_tables

TABLE = "lineitem"
FORMATS = ("parquet", "delta", "iceberg")


def export(url: str, out: Path, table_format: str) -> Any:
    import rivet

    source = {"type": "postgres", "url": f"{url}?sslmode=disable"}
    extra = {"iceberg": {"catalog_url": f"sqlite:///{out.parent / 'catalog.db'}"}} if table_format == "iceberg" else {}
    result = rivet.export(source, table=TABLE, destination=str(out), name=TABLE, format=table_format, **extra)
    return result


def duckdb_reader(results: dict[str, Any]) -> Callable[[str], tuple]:
    import duckdb

    connection = duckdb.connect()
    for name in ("delta", "avro", "iceberg"):
        module = __import__(f"duckdb_extension_{name}")
        connection.execute(f"LOAD '{Path(module.__file__).parent / f'extensions/v1.5.5/{name}.duckdb_extension'}'")
    sources = {
        "parquet": f"read_parquet({[str(u) for u in results['parquet'].files]})",
        "delta": f"delta_scan('{results['delta'].table.location}')",
        "iceberg": f"iceberg_scan('{results['iceberg'].table.open().metadata_location}')",
    }

    def read(table_format: str) -> tuple:
        sql = f"SELECT count(*), sum(l_extendedprice), max(l_shipdate) FROM {sources[table_format]}"
        return tuple(connection.sql(sql).fetchone())

    return read


def polars_reader(results: dict[str, Any]) -> Callable[[str], tuple]:
    import polars as pl

    os.environ.setdefault("POLARS_ICEBERG_PLANNER", "pyiceberg")
    iceberg_table = results["iceberg"].table.open()
    frames = {
        "parquet": lambda: pl.scan_parquet(results["parquet"].files),
        "delta": lambda: pl.scan_delta(results["delta"].table.location),
        "iceberg": lambda: pl.scan_iceberg(iceberg_table),
    }

    def read(table_format: str) -> tuple:
        frame = frames[table_format]().select(pl.len(), pl.col("l_extendedprice").sum(), pl.col("l_shipdate").max())
        return tuple(frame.collect().row(0))

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="full", choices=sorted(SCALES))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    scale = SCALES[args.scale]
    ensure_tables(scale, (TABLE,))
    with tempfile.TemporaryDirectory(prefix="rivet-table-reads-") as tmp:
        results = {f: export(scale.url, Path(tmp) / f / "out", f) for f in FORMATS}
        print(f"{TABLE}: {scale.lineitem:,} rows; median of {args.repeat} reads of count, sum and max")
        print("| reader | format | read s | vs parquet |")
        print("|---|---|---:|---:|")
        for reader_name, make in (("duckdb", duckdb_reader), ("polars", polars_reader)):
            read = make(results)
            answers = {f: read(f) for f in FORMATS}  # warm: extensions and file metadata loaded once
            if len({str(a) for a in answers.values()}) != 1:
                raise RuntimeError(f"{reader_name} read different results: {answers}")
            times: dict[str, list[float]] = {f: [] for f in FORMATS}
            for _ in range(args.repeat):
                for f in FORMATS:
                    start = time.perf_counter()
                    read(f)
                    times[f].append(time.perf_counter() - start)
            base = statistics.median(times["parquet"])
            for f in FORMATS:
                median = statistics.median(times[f])
                print(f"| {reader_name} | {f} | {median:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
