"""CI benchmark gate at the small scale: fails when a ratio crosses its threshold.

Run with ``pytest bench/ --benchmark-only``. Each round runs the baseline (untimed
setup, recorded by hand) and then rivet (timed by pytest-benchmark), so both see
the same machine state; the gate compares medians.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from bench.harness import measure
from bench.methods import run_one

ROUNDS = 3
# rivet's single-connection full export must be at least as fast as these peers.
MAX_TIME_RATIO = {"connectorx": 1.0, "adbc": 1.0}
MAX_RSS_MB = 300


def time_ratio(benchmark: Any, method: str, peer: str, url: str, table: str) -> float:
    """Median time of rivet's ``method`` over the median of ``peer``, run alternately on one table."""
    out = Path(tempfile.mkdtemp(prefix="rivet-gate-"))
    peer_seconds: list[float] = []

    def run_peer() -> None:
        start = time.perf_counter()
        run_one(peer, url, table, out / "peer")
        peer_seconds.append(time.perf_counter() - start)

    run_peer()  # warm both code paths and the page cache before timing
    run_one(method, url, table, out / "rivet")
    peer_seconds.clear()
    benchmark.pedantic(run_one, args=(method, url, table, out / "rivet"), setup=run_peer, rounds=ROUNDS)
    ratio = float(benchmark.stats.stats.median / statistics.median(peer_seconds))
    benchmark.extra_info.update({"peer": peer, "peer_median_s": statistics.median(peer_seconds), "ratio": ratio})
    return ratio


@pytest.mark.parametrize("peer", sorted(MAX_TIME_RATIO))
@pytest.mark.parametrize("table", ["lineitem", "content_items", "events"])
def test_rivet_full_is_not_slower_than(benchmark, small, peer: str, table: str) -> None:
    ratio = time_ratio(benchmark, "rivet", peer, small.url, table)
    assert ratio <= MAX_TIME_RATIO[peer], f"rivet took {ratio:.2f}x the time of {peer} on {table}"


def test_rivet_peak_rss_is_bounded(benchmark, small) -> None:
    result = benchmark.pedantic(measure, args=("rivet", small.url, "content_items"), rounds=1)
    benchmark.extra_info["peak_rss_mb"] = result.peak_rss_mb
    assert result.ok, result.error
    assert result.peak_rss_mb <= MAX_RSS_MB


@pytest.mark.parametrize("table", ["lineitem", "content_items", "events"])
def test_rivet_chunked_query_is_not_slower_than_duckdb(benchmark, small, table: str) -> None:
    # The form users write: `query:` with a chunk_column, parallel 2, against DuckDB's scanner with 2 threads.
    ratio = time_ratio(benchmark, "rivet_chunked_query", "duckdb", small.url, table)
    assert ratio <= 1.0, f"rivet chunked query took {ratio:.2f}x the time of DuckDB on {table}"


@pytest.mark.parametrize("method", ["rivet_chunked", "rivet_chunked_query"])
def test_rivet_chunked_on_mariadb_is_not_slower_than_connectorx(benchmark, small_mysql, method: str) -> None:
    ratio = time_ratio(benchmark, method, "connectorx", small_mysql.mysql_url, "lineitem")
    assert ratio <= 1.0, f"{method} took {ratio:.2f}x the time of connectorx on MariaDB lineitem"
