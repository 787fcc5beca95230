"""``rivet metrics --format prometheus`` and ``rivet run --metrics-file``: the state store's account of each
export in the Prometheus text format, read back with prometheus_client's own parser."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.outputs import run_rivet, write_config


def config(home: Path) -> Path:
    """An export of five rows, and one whose query fails."""
    with sqlite3.connect(home / "shop.db") as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(5)])
    exports = [
        {"name": "items", "table": "items", "destination": str(home / "out" / "items")},
        {"name": "broken", "query": "SELECT * FROM missing", "destination": str(home / "out" / "broken")},
    ]
    return write_config(home, {"type": "sqlite", "path": str(home / "shop.db")}, exports)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, by its name and labels (parsed as a scraper parses them)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def labels(export: str, mode: str = "full", **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"export": export, "mode": mode, "source": "sqlite", "destination": "file", **more}.items()))


def test_run_writes_each_exports_metrics_for_a_scraper(tmp_path):
    rivet_yaml = config(tmp_path)
    metrics = tmp_path / "textfile" / "rivet.prom"
    before = time.time()
    for _ in range(2):
        ran = run_rivet("run", "-c", str(rivet_yaml), "--metrics-file", str(metrics))
        assert ran.returncode == 1  # the broken export fails; the metrics are written all the same
    found = samples(metrics.read_text())
    items, broken = labels("items"), labels("broken")
    assert found[("rivet_export_runs_total", labels("items", status="success"))] == 2
    assert found[("rivet_export_runs_total", labels("broken", status="failed"))] == 2
    assert found[("rivet_export_failures_total", broken)] == 2 and found[("rivet_export_failures_total", items)] == 0
    assert found[("rivet_export_rows_total", items)] == 10 and found[("rivet_export_rows_total", broken)] == 0
    assert found[("rivet_export_files_total", items)] == 2 and found[("rivet_export_bytes_total", items)] > 0
    assert found[("rivet_export_retries_total", items)] == 0
    assert found[("rivet_export_last_run_rows", items)] == 5
    assert (
        found[("rivet_export_last_run_success", items)] == 1 and found[("rivet_export_last_run_success", broken)] == 0
    )
    assert before - 1 <= found[("rivet_export_last_success_timestamp_seconds", items)] <= time.time()
    assert ("rivet_export_last_success_timestamp_seconds", broken) not in found
    assert found[("rivet_export_last_run_duration_seconds", items)] >= 0
    assert found[("rivet_export_last_run_peak_memory_bytes", items)] > 1024 * 1024
    # One statement read the table: the longest read is the whole of it, within the run's time.
    read = found[("rivet_export_last_run_read_seconds", items)]
    assert 0 < read == found[("rivet_export_last_run_longest_read_seconds", items)]
    assert read <= found[("rivet_export_last_run_duration_seconds", items)]
    # The failing query was one statement too, however short.
    assert (
        found[("rivet_export_last_run_read_seconds", broken)]
        <= found[("rivet_export_last_run_duration_seconds", broken)]
    )
    # Labels name the export, never where it writes; no temporary file is left beside it.
    assert str(tmp_path) not in metrics.read_text()
    assert [p.name for p in metrics.parent.iterdir()] == ["rivet.prom"]
    # rivet metrics says the same, from the state store alone.
    shown = run_rivet("metrics", "-c", str(rivet_yaml), "--format", "prometheus")
    assert shown.returncode == 0 and samples(shown.stdout) == found


def test_an_export_that_never_ran_has_its_counters_at_zero_and_no_last_run(tmp_path):
    shown = run_rivet("metrics", "-c", str(config(tmp_path)), "--format", "prometheus")
    assert shown.returncode == 0, shown.stderr
    found = samples(shown.stdout)
    assert found and all(name.endswith("_total") and value == 0 for (name, _), value in found.items())
    assert {dict(labels)["export"] for _, labels in found} == {"items", "broken"}
