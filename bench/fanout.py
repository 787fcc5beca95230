"""Many exports at once: sequential vs threads vs processes, side by side in one run.

``python bench/fanout.py [--scale full] [--repeat 3]``: ten small tables and one large
one (lineitem) exported by one config; reports wall time, the ratio to sequential, and
the peak RSS of the whole process tree (parent and children, sampled every 50 ms).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).parent.parent))

from bench.fixtures import SCALES, ensure_tables

SMALL_TABLES = 10
SMALL_ROWS = {"full": 200_000, "small": 20_000, "tiny": 2_000}
MODES = {
    "sequential": [],
    "threads": ["--parallel-exports"],
    "processes": ["--parallel-export-processes"],
}


def ensure_small_tables(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(1, SMALL_TABLES + 1):
            name = f"fan_small_{i:02d}"
            found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
            if found and found[0] and conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == rows:  # type: ignore[index]
                continue
            conn.execute(f"DROP TABLE IF EXISTS {name}")
            conn.execute(
                f"CREATE TABLE {name} AS SELECT g AS id, g * {i} AS amount, md5(g::text) AS label, "
                f"date '2024-01-01' + (g % 365) AS day FROM generate_series(1, {rows}) AS g"
            )


def write_config(directory: Path, url: str) -> Path:
    exports = "".join(
        f"  - {{name: small_{i:02d}, table: fan_small_{i:02d}, destination: out/small_{i:02d}}}\n"
        for i in range(1, SMALL_TABLES + 1)
    )
    exports += "  - {name: large, table: lineitem, destination: out/large}\n"
    path = directory / "rivet.yaml"
    path.write_text(f'source: {{type: postgres, url: "{url}?sslmode=disable"}}\nexports:\n{exports}')
    return path


def tree_rss_mb(root: psutil.Process) -> float:
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 1e6


def measure(config: Path, flags: list[str]) -> tuple[float, float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rivet", "run", "-c", str(config), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    root = psutil.Process(proc.pid)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, tree_rss_mb(root))
            except psutil.NoSuchProcess:
                return
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    stop.set()
    sampler.join()
    return time.perf_counter() - start, peak, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="full", choices=sorted(SCALES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    scale = SCALES[args.scale]
    ensure_tables(scale, ("lineitem",))
    ensure_small_tables(scale.url, SMALL_ROWS[args.scale])
    runs: dict[str, list[tuple[float, float, int]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="rivet-fanout-") as tmp:
        config = write_config(Path(tmp), scale.url)
        for _ in range(args.repeat):
            for mode, flags in MODES.items():
                runs[mode].append(measure(config, flags))
    base = statistics.median(r[0] for r in runs["sequential"])
    print(
        f"{SMALL_TABLES} tables of {SMALL_ROWS[args.scale]:,} rows + lineitem ({scale.lineitem:,} rows), "
        f"median of {args.repeat}"
    )
    print("| mode | wall s | vs sequential | peak RSS of the process tree MB | exit codes |")
    print("|---|---:|---:|---:|---|")
    for mode, results in runs.items():
        wall = statistics.median(r[0] for r in results)
        rss = max(r[1] for r in results)
        codes = sorted({r[2] for r in results})
        print(f"| {mode} | {wall:.2f} | {wall / base:.2f} | {rss:.0f} | {codes} |")


if __name__ == "__main__":
    main()
