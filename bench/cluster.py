"""Chunks on a Dask cluster vs the same chunks on local threads, side by side in one run.

``python bench/cluster.py [--scale full] [--repeat 3] [--chunks 50,200]``: lineitem, mode
chunked with parallel: 2, read by this process's threads and by a ``LocalCluster`` of two
worker processes (one thread each). On one machine the cluster cannot be faster; what it
costs is the overhead per task: (cluster wall - threads wall) / chunks, reported for a few
chunk counts so the fixed part shows. The cluster starts before the timed runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from bench.fixtures import SCALES, ensure_tables

TABLE = "lineitem"
KEY = "l_orderkey"


def write_config(directory: Path, url: str, chunks: int, rows: int) -> Path:
    export = {
        "name": TABLE,
        "table": TABLE,
        "mode": "chunked",
        "chunk_column": KEY,
        "chunk_size": max(1, rows // chunks),
        "parallel": 2,
        "destination": {"type": "local", "path": str(directory / "out")},
    }
    config = directory / f"rivet-{chunks}.yaml"
    source = {"type": "postgres", "url": f"{url}?sslmode=disable"}
    config.write_text(json.dumps({"source": source, "exports": [export]}))
    return config


def timed(config: Path, client: object | None) -> tuple[float, int, int]:
    import rivet

    start = time.perf_counter()
    result = rivet.run(config, dask_client=client)
    seconds = time.perf_counter() - start
    export = result.exports[0]
    if not result.ok:
        raise RuntimeError(export.error)
    return seconds, export.rows, len(export.chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="full", choices=sorted(SCALES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunks", default="50,200")
    args = parser.parse_args()
    scale = SCALES[args.scale]
    ensure_tables(scale, (TABLE,))
    from distributed import Client, LocalCluster

    print(f"{TABLE}: {scale.lineitem:,} rows, parallel 2, median of {args.repeat}")
    print("| chunks | threads s | dask s | dask / threads | overhead per task ms |")
    print("|---:|---:|---:|---:|---:|")
    with (
        tempfile.TemporaryDirectory(prefix="rivet-cluster-") as tmp,
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        for chunks in (int(c) for c in args.chunks.split(",")):
            config = write_config(Path(tmp), scale.url, chunks, scale.lineitem)
            timed(config, client)  # the workers import rivet and pyarrow once, outside the timing
            local, remote = [], []
            for _ in range(args.repeat):
                local.append(timed(config, None))
                remote.append(timed(config, client))
            threads_s = statistics.median(r[0] for r in local)
            dask_s = statistics.median(r[0] for r in remote)
            tasks = remote[0][2]
            if {r[1] for r in local + remote} != {scale.lineitem}:
                raise RuntimeError(f"rows differ: {[r[1] for r in local + remote]}")
            overhead_ms = (dask_s - threads_s) / tasks * 1000
            print(f"| {tasks} | {threads_s:.2f} | {dask_s:.2f} | {dask_s / threads_s:.2f} | {overhead_ms:.1f} |")


if __name__ == "__main__":
    main()
