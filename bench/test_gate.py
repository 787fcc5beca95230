"""The benchmark gate: rivet against each peer on the same table, the same machine, the same run.

``make bench-gate`` (``pytest bench/test_gate.py``). Each comparison runs both methods once to
warm them and the page cache, then ROUNDS rounds in alternating order (peer first, then rivet
first, ...), each run a process of its own timed around its work, and compares the medians:
rivet fails when its median is more than MARGIN times the peer's (or, where it is known to be
behind, more than its BEHIND allowance). Every run of every method is
checked: the Parquet files it wrote hold exactly the table's rows, and are not empty. Every
method gets the same connections (one, or two where rivet reads with two) and none uses TLS.
The figures go to ``$RIVET_GATE_JSON`` (default ``bench-gate.json``), one object per comparison.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bench.fixtures import Scale
from bench.harness import compile_bytecode, measure

HERE = Path(__file__).parent

ROUNDS = 5
# A single run varies by about ±20% here; the median of 5 alternating rounds by far less.
# rivet fails the gate when it is more than 10% slower than a peer.
MARGIN = 1.10
MAX_RSS_MB = 300
# Where rivet is behind today, each an open problem (README, "Where rivet is behind"): the ratio
# allowed there, a margin over the one measured, so the gate still catches a regression. Keyed
# by (method, peer, table, scale). Remove an entry once rivet is within MARGIN there.
BEHIND = {
    # Start-up: a fresh process spends about 0.3 s importing and planning before the first row,
    # which a small table (0.2-1 M rows, about a second) cannot hide.
    ("rivet", "connectorx", "lineitem", "small"): 1.30,
    ("rivet", "connectorx", "content_items", "small"): 1.30,
    ("rivet", "connectorx", "events", "small"): 1.30,
    ("rivet", "adbc", "content_items", "small"): 1.30,
    ("rivet", "adbc", "events", "small"): 1.30,
    ("rivet_chunked_query", "duckdb", "lineitem", "small"): 1.30,
    # events (four narrow columns) through chunked `query:`: measured 1.58 and 1.43 times DuckDB's time.
    ("rivet_chunked_query", "duckdb", "events", "small"): 1.75,
    ("rivet_chunked_query", "duckdb", "events", "medium"): 1.60,
    # MariaDB 0.2 M rows: start-up and chunk planning against connectorx's one split (measured 1.52).
    ("rivet_chunked", "connectorx_partitioned", "lineitem", "small"): 1.70,
    # Keyset chunks on a UUID key: planning walks the key's index once (0.3 s per M rows here, where
    # the table outgrows MariaDB's 128 MiB buffer pool) before two connections read; measured 1.14.
    ("rivet_keyset", "rivet", "lineitem_uuid", "medium"): 1.25,
}
REPORT = Path(os.environ.get("RIVET_GATE_JSON", "bench-gate.json"))
_figures: list[dict[str, Any]] = []


def run_alone(method: str, url: str, table: str) -> dict[str, Any]:
    """``method`` in a process of its own (as a user runs it, nothing left over from the other):
    the seconds of its work, and the rows and bytes of the Parquet files it wrote."""
    out = tempfile.mkdtemp(prefix=f"rivet-gate-{method}-")
    compile_bytecode(HERE.parent / "python" / "rivet", HERE)
    proc = subprocess.run(
        [sys.executable, str(HERE / "methods.py"), method, url, table, out],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        check=False,
    )
    assert proc.returncode == 0, f"{method} on {table} failed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return dict(json.loads(proc.stdout))


def compare(method: str, peer: str, url: str, table: str, rows: int, scale: str) -> dict[str, Any]:
    """Both methods' timings over ROUNDS alternating rounds, each run's output checked."""
    seconds: dict[str, list[float]] = {method: [], peer: []}
    sizes: dict[str, int] = {}

    def run(name: str) -> None:
        done = run_alone(name, url, table)
        assert done["rows_in_files"] == rows, f"{name} wrote {done['rows_in_files']:,} rows of {rows:,} on {table}"
        assert done["bytes"] > 0, f"{name} wrote no bytes on {table}"
        seconds[name].append(done["seconds"])
        sizes[name] = done["bytes"]

    run(peer)  # warm both code paths and the page cache; not counted
    run(method)
    seconds[peer].clear()
    seconds[method].clear()
    for round_ in range(ROUNDS):
        for name in (peer, method) if round_ % 2 == 0 else (method, peer):
            run(name)
    figure = {
        "method": method,
        "peer": peer,
        "table": table,
        "rows": rows,
        "seconds": seconds[method],
        "peer_seconds": seconds[peer],
        "bytes": sizes[method],
        "peer_bytes": sizes[peer],
        "ratio": statistics.median(seconds[method]) / statistics.median(seconds[peer]),
        "allowed": BEHIND.get((method, peer, table, scale), MARGIN),
    }
    _figures.append(figure)
    REPORT.write_text(json.dumps(_figures, indent=2) + "\n")
    return figure


def assert_within_margin(figure: dict[str, Any]) -> None:
    f = figure
    assert f["ratio"] <= f["allowed"], (
        f"{f['method']} took {f['ratio']:.2f}x the time of {f['peer']} on {f['table']} ({f['rows']:,} rows; "
        f"medians of {ROUNDS}: {statistics.median(f['seconds']):.2f} s vs {statistics.median(f['peer_seconds']):.2f} s)"
    )


TABLES = ["lineitem", "content_items", "events"]


@pytest.mark.parametrize("peer", ["connectorx", "adbc"])
@pytest.mark.parametrize("table", TABLES)
def test_postgres_full_on_one_connection(scale: Scale, peer: str, table: str) -> None:
    assert_within_margin(compare("rivet", peer, scale.url, table, scale.rows(table), scale.name))


@pytest.mark.parametrize("table", TABLES)
def test_postgres_chunked_query_on_two_connections_against_duckdb(scale: Scale, table: str) -> None:
    # The form users write: `query:` with a chunk_column, parallel 2, against DuckDB's scanner with 2 threads.
    assert_within_margin(compare("rivet_chunked_query", "duckdb", scale.url, table, scale.rows(table), scale.name))


@pytest.mark.parametrize(
    ("method", "peer"),
    [("rivet_chunked", "connectorx_partitioned"), ("rivet_chunked_query", "duckdb_mysql")],
)
def test_mariadb_chunked_on_two_connections(mysql_scale: tuple[Scale, int], method: str, peer: str) -> None:
    built, rows = mysql_scale
    assert_within_margin(compare(method, peer, built.mysql_url, "lineitem", rows, built.name))


def test_mariadb_keyset_chunks_on_a_uuid_key_against_one_streamed_statement(mysql_scale: tuple[Scale, int]) -> None:
    # A table keyed by a UUID: keyset chunks with two connections are no slower than one statement.
    built, rows = mysql_scale
    assert_within_margin(compare("rivet_keyset", "rivet", built.mysql_url, "lineitem_uuid", rows, built.name))


def test_rivet_peak_rss_is_bounded(scale: Scale) -> None:
    result = measure("rivet", scale.url, "content_items")
    assert result.ok, result.error
    assert result.rows == scale.content_items
    assert result.peak_rss_mb <= MAX_RSS_MB, f"rivet peaked at {result.peak_rss_mb:.0f} MB on content_items"
