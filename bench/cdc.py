"""Change capture, side by side with the floor: ``python bench/cdc.py [--source postgres,mariadb]
[--changes 1000000] [--repeat 3] [--merge-rows 10000000 --merge-changes 100000]``.

Each repetition logs ``--changes`` small-row inserts (10,000 per transaction) behind two
anchors taken at the same place, then drains them twice, in alternating order:

- the floor only drains the log without decoding it into rows: ``pg_recvlogical`` with
  pgoutput to /dev/null on PostgreSQL, ``mariadb-binlog`` to /dev/null on MariaDB (and,
  for reference, ``mariadb-binlog -v``, which decodes each row into text);
- ``rivet run`` of a ``mode: cdc`` export decodes every change into Arrow and publishes
  Parquet parts (its position committed, its slot confirmed), as a scheduled run does;
  and the same less a run's fixed cost (process start, config, state, connections), timed
  by a run with nothing new right after.

Then, with ``--merge-rows``, the MERGE of ``--merge-changes`` updates into a Delta table of
that many rows (``write: merge``): seconds, and the files the merge rewrote.

Servers are throwaway ones started from the local binaries with their logs on. Prints a
markdown table and writes JSON to bench/results/. Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

import psycopg
import pymysql

from tests.servers import mariadb_server, postgres_bin, postgres_cluster

BATCH = 10_000
RESULTS = Path(__file__).parent / "results"


@dataclass
class Drain:
    """One drain of the changes: who, how long, how many, the peak memory of rivet's process."""

    source: str
    method: str
    seconds: float
    changes: int
    peak_rss_mb: float | None = None

    @property
    def per_second(self) -> float:
        return self.changes / self.seconds if self.seconds else 0.0


def rivet(*args: str) -> dict[str, Any]:
    """``rivet ARGS --json`` in a fresh process: its first export's summary (rows, peak RSS)."""
    done = subprocess.run([sys.executable, "-m", "rivet", *args, "--json"], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"rivet {' '.join(args)} failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout)["exports"][0])


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = action()
    return time.perf_counter() - start, out


def rivet_drains(source: str, config: Path) -> list[Drain]:
    """``rivet run`` draining the changes; and the same less a run's fixed cost (process start, config,
    state, connections), timed at once by a run with nothing new to read."""
    seconds, summary = timed(lambda: rivet("run", "-c", str(config)))
    rows = int(summary["rows"])
    idle, _ = timed(lambda: rivet("run", "-c", str(config)))
    return [
        Drain(source, "rivet", seconds, rows, float(summary["peak_rss_mb"])),
        Drain(source, "rivet less a run's fixed cost", max(seconds - idle, 1e-6), rows),
    ]


def write_config(home: Path, source: dict[str, Any], export: dict[str, Any]) -> Path:
    path = home / "rivet.yaml"
    path.write_text(f"source: {json.dumps(source)}\nexports:\n  - {json.dumps(export)}\n")
    return path


@contextmanager
def pg_server() -> Iterator[Any]:
    settings = {"wal_level": "logical", "max_wal_senders": "8", "max_replication_slots": "8",
                "max_wal_size": "8GB", "synchronous_commit": "off", "shared_buffers": "256MB"}  # fmt: skip
    with postgres_cluster(**settings) as cluster:
        yield cluster


def pg_round(cluster: Any, n: int, round_no: int, home: Path) -> list[Drain]:
    """One repetition on PostgreSQL: both slots at one place, ``n`` inserts, both drains."""
    slot, floor = f"rivet_bench_{round_no}", f"floor_bench_{round_no}"
    config = write_config(home, cluster.source, {
        "name": f"bench_{round_no}", "table": "public.changes", "mode": "cdc",
        "cdc": {"slot": slot, "publication": "bench"}, "destination": str(home / "out"),
    })  # fmt: skip
    with psycopg.connect(cluster.url, autocommit=True) as sql:
        rivet("run", "-c", str(config))  # anchors: the slot, and the position in the state store
        sql.execute(f"SELECT pg_create_logical_replication_slot('{floor}', 'pgoutput')")
        for start in range(0, n, BATCH):
            sql.execute(
                "INSERT INTO changes SELECT i, i %% 1000, 'note ' || i "
                "FROM generate_series(%s::bigint, %s::bigint) AS i",
                (start + 1 + round_no * n, min(start + BATCH, n) + round_no * n),
            )
        until = sql.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
    recv = [
        str(postgres_bin() / "pg_recvlogical"),
        "-d", f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres",
        "--slot", floor, "--start", "--endpos", until, "--no-loop", "-f", "/dev/null",
        "-o", "proto_version=1", "-o", "publication_names=bench", "-o", "binary=true",
    ]  # fmt: skip

    def floor_drain() -> Drain:
        seconds, _ = timed(lambda: subprocess.run(recv, check=True, capture_output=True))
        return Drain("postgres", "pg_recvlogical", seconds, n)

    def rivet_drain() -> list[Drain]:
        return rivet_drains("postgres", config)

    drains = [floor_drain(), *rivet_drain()] if round_no % 2 == 0 else [*rivet_drain(), floor_drain()]
    with psycopg.connect(cluster.url, autocommit=True) as sql:
        sql.execute(f"SELECT pg_drop_replication_slot('{floor}')")
        sql.execute(f"SELECT pg_drop_replication_slot('{slot}')")
    return drains


def pg_drains(n: int, repeat: int) -> list[Drain]:
    drains: list[Drain] = []
    with pg_server() as cluster:
        with psycopg.connect(cluster.url, autocommit=True) as sql:
            sql.execute("CREATE TABLE changes (id bigint PRIMARY KEY, v int, note text)")
            sql.execute("CREATE PUBLICATION bench FOR TABLE changes")
        for r in range(repeat):
            with tempfile.TemporaryDirectory() as home:
                drains += pg_round(cluster, n, r, Path(home))
    return drains


def my_round(server: Any, connection: Any, n: int, round_no: int, home: Path) -> list[Drain]:
    """One repetition on MariaDB: rivet anchored, ``n`` inserts, both drains from the same position."""
    config = write_config(home, {"type": "mysql", "url": server.url}, {
        "name": f"bench_{round_no}", "table": "test.changes", "mode": "cdc", "destination": str(home / "out"),
    })  # fmt: skip
    rivet("run", "-c", str(config))
    with connection.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        file, offset = cur.fetchone()[:2]
        for start in range(0, n, BATCH):
            first = start + 1 + round_no * n
            rows = ",".join(f"({i},{i % 1000},'note {i}')" for i in range(first, first + min(BATCH, n - start)))
            cur.execute(f"INSERT INTO changes VALUES {rows}")
    dump = ["mariadb-binlog", "--read-from-remote-server", "--host=127.0.0.1", f"--port={server.port}",
            "--user=root", f"--start-position={offset}", "--to-last-log", file]  # fmt: skip

    def floor_drain(decoded: bool) -> Drain:
        # Without -v the events are copied out as base64; with it each row is decoded into text.
        flags = ["-v", "--base64-output=DECODE-ROWS"] if decoded else []
        seconds, _ = timed(lambda: subprocess.run([*dump, *flags], check=True, stdout=subprocess.DEVNULL))
        return Drain("mariadb", "mariadb-binlog -v" if decoded else "mariadb-binlog", seconds, n)

    floors = [floor_drain(False), floor_drain(True)]
    return (
        [*floors, *rivet_drains("mariadb", config)]
        if round_no % 2 == 0
        else [*rivet_drains("mariadb", config), *floors]
    )


def my_drains(n: int, repeat: int) -> list[Drain]:
    drains: list[Drain] = []
    options = ("--log-bin={root}/data/bin", "--binlog-format=ROW", "--server-id=1", "--max-binlog-size=1G",
               "--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0")  # fmt: skip
    with mariadb_server(options=options) as server:
        server.sql("CREATE TABLE test.changes (id BIGINT PRIMARY KEY, v INT, note VARCHAR(40))")
        connection = pymysql.connect(host="127.0.0.1", port=server.port, user="root", database="test", autocommit=True)
        try:
            for r in range(repeat):
                with tempfile.TemporaryDirectory() as home:
                    drains += my_round(server, connection, n, r, Path(home))
        finally:
            connection.close()
    return drains


def merge_bench(rows: int, changes: int) -> dict[str, Any]:
    """A Delta table of ``rows`` rows from a snapshot, then ``changes`` updates merged into it."""
    from deltalake import DeltaTable

    with pg_server() as cluster, tempfile.TemporaryDirectory() as home_dir:
        home = Path(home_dir)
        with psycopg.connect(cluster.url, autocommit=True) as sql:
            sql.execute("CREATE TABLE wide (id bigint PRIMARY KEY, v int, note text)")
            sql.execute(
                "INSERT INTO wide SELECT i, i %% 1000, 'note ' || i FROM generate_series(1, %s::bigint) AS i", (rows,)
            )
        config = write_config(home, cluster.source, {
            "name": "merged", "table": "public.wide", "mode": "cdc", "format": "delta", "write": "merge",
            "cdc": {"initial": "snapshot"}, "destination": str(home / "lake"),
        })  # fmt: skip
        snapshot_s, _ = timed(lambda: rivet("run", "-c", str(config)))
        step = max(rows // changes, 1)
        with psycopg.connect(cluster.url, autocommit=True) as sql:
            sql.execute(
                "UPDATE wide SET v = v + 1 WHERE id %% %s::bigint = 0 AND id <= %s::bigint", (step, step * changes)
            )
        merge_s, summary = timed(lambda: rivet("run", "-c", str(config)))
        metrics = DeltaTable(str(home / "lake")).history(1)[0].get("operationMetrics", {})
        return {
            "rows": rows,
            "changes": changes,
            "snapshot_s": round(snapshot_s, 2),
            "merge_s": round(merge_s, 2),
            "merged_keys": summary["rows"],
            "files_rewritten": metrics.get("num_target_files_removed"),
            "files_added": metrics.get("num_target_files_added"),
            "peak_rss_mb": summary["peak_rss_mb"],
        }


def render(drains: list[Drain]) -> str:
    lines = [
        "| source | method | changes/s (median) | seconds (median) | peak RSS MB | vs floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for source in sorted({d.source for d in drains}):
        mine = [d for d in drains if d.source == source]
        rates = {m: statistics.median(d.per_second for d in mine if d.method == m) for m in {d.method for d in mine}}
        floor = max(v for m, v in rates.items() if not m.startswith("rivet"))  # the fastest drain is the floor
        for method, rate in sorted(rates.items()):
            seconds = statistics.median(d.seconds for d in mine if d.method == method)
            rss = [d.peak_rss_mb for d in mine if d.method == method and d.peak_rss_mb is not None]
            shown_rss = f"{max(rss):.0f}" if rss else ""
            lines.append(f"| {source} | {method} | {rate:,.0f} | {seconds:.2f} | {shown_rss} | {rate / floor:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="postgres,mariadb")
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--merge-rows", type=int, default=0)
    parser.add_argument("--merge-changes", type=int, default=100_000)
    args = parser.parse_args()
    # Installed from a wheel, the package is byte-compiled: measure that, not compiling each run.
    compileall.compile_dir(Path(__file__).parent.parent / "python" / "rivet", quiet=1)
    drains: list[Drain] = []
    sources = args.source.split(",")
    if "postgres" in sources:
        drains += pg_drains(args.changes, args.repeat)
    if "mariadb" in sources:
        drains += my_drains(args.changes, args.repeat)
    report: dict[str, Any] = {"drains": [asdict(d) for d in drains]}
    if drains:
        print(render(drains), flush=True)
    if args.merge_rows:
        report["merge"] = merge_bench(args.merge_rows, args.merge_changes)
        print(json.dumps(report["merge"], indent=2))
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"cdc-{stamp}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
