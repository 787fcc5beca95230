"""Run history from the state store: rivet metrics, rivet journal, rivet state files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import pg_url
from tests.outputs import run_rivet


@pytest.fixture
def two_runs(pg, pg_table, tmp_path) -> Path:
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    pg.execute(f"INSERT INTO {table} SELECT g, 'x' FROM generate_series(1, 300) g")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - {{name: c, table: {table}, mode: chunked, chunk_size: 100, destination: out/c}}
              - {{name: f, query: "SELECT * FROM {table} WHERE 1/(id - id) = 0", destination: out/f}}
            """
        )
    )
    assert run_rivet("run", "-c", str(config), "-e", "c").returncode == 0
    pg.execute(f"ALTER TABLE {table} ADD COLUMN w int")
    assert run_rivet("run", "-c", str(config)).returncode == 1  # f fails: division by zero
    return config


@pytest.mark.postgres
def test_metrics_lists_runs_newest_first_with_their_numbers(two_runs):
    doc = json.loads(run_rivet("metrics", "-c", str(two_runs), "--json").stdout)
    runs = [(r["export_name"], r["status"], r["rows"]) for r in doc["runs"]]
    assert sorted(runs[:2]) == [("c", "success", 300), ("f", "failed", 0)] and runs[2] == ("c", "success", 300)
    only = json.loads(run_rivet("metrics", "-c", str(two_runs), "-e", "f", "--json").stdout)["runs"]
    assert len(only) == 1 and "division by zero" in only[0]["error"]
    text = run_rivet("metrics", "-c", str(two_runs), "--last", "1")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 1


@pytest.mark.postgres
def test_journal_keeps_what_happened_in_a_run(two_runs):
    doc = json.loads(run_rivet("journal", "-c", str(two_runs), "-e", "c", "--json").stdout)
    [run] = doc["runs"]
    kinds = [e["type"] for e in run["events"]]
    assert kinds[0] == "started" and kinds[-1] == "finished" and "progress" not in kinds
    assert {"type": "schema_drift", "added": ["w: int32"]}.items() <= next(
        e for e in run["events"] if e["type"] == "schema_drift"
    ).items()
    older = json.loads(run_rivet("journal", "-c", str(two_runs), "-e", "c", "--last", "2", "--json").stdout)["runs"]
    assert len(older) == 2 and not any(e["type"] == "schema_drift" for e in older[1]["events"])
    picked = run_rivet("journal", "-c", str(two_runs), "-e", "c", "--run-id", older[1]["run_id"])
    assert picked.returncode == 0 and older[1]["run_id"] in picked.stdout
    assert run_rivet("journal", "-c", str(two_runs), "-e", "c", "--run-id", "nope").returncode == 1


@pytest.mark.postgres
def test_state_files_lists_committed_files_with_checksums(two_runs):
    doc = json.loads(run_rivet("state", "files", "-c", str(two_runs), "-e", "c", "--json").stdout)
    assert len(doc["files"]) == 2 and sum(f["rows"] for f in doc["files"]) == 600
    for f in doc["files"]:
        assert len(f["sha256"]) == 64 and f["url"].endswith(".parquet")
