"""destination type stdout: one complete file on standard output, the summary on stderr."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import pg_source
from tests.outputs import write_config


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "rivet", "run", "-c", str(config), *args], capture_output=True)


def _summary(stderr: bytes) -> dict:
    text = stderr.decode()
    return json.loads(text[text.index("{\n") :])


@pytest.mark.postgres
def test_csv_to_stdout_with_the_json_summary_on_stderr(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, name text)")
    pg.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b,c'), (3, NULL)")
    config = write_config(
        tmp_path,
        pg_source(),
        f"- {{name: s, query: 'SELECT * FROM {table} ORDER BY id', format: csv, destination: {{type: stdout}}}}\n",
    )
    ran = _run(config, "--json")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode().splitlines() == ['"id","name"', '1,"a"', '2,"b,c"', "3,"]
    summary = _summary(ran.stderr)
    assert summary["exports"][0]["rows"] == 3 and summary["exports"][0]["files"] == ["stdout"]


@pytest.mark.postgres
def test_parquet_to_stdout_and_an_incremental_cursor_that_moves_after_it(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int)")
    pg.execute(f"INSERT INTO {table} SELECT generate_series(1, 5)")
    config = write_config(
        tmp_path,
        pg_source(),
        f"- {{name: s, query: 'SELECT * FROM {table}', mode: incremental, cursor_column: id, "
        "destination: {type: stdout}}\n",
    )
    first = _run(config)
    assert first.returncode == 0, first.stderr
    assert sorted(pq.read_table(io.BytesIO(first.stdout))["id"].to_pylist()) == [1, 2, 3, 4, 5]
    pg.execute(f"INSERT INTO {table} VALUES (6)")
    second = _run(config)
    assert pq.read_table(io.BytesIO(second.stdout))["id"].to_pylist() == [6]
    assert not any(p.suffix == ".parquet" for p in tmp_path.rglob("*")), "nothing is written beside the config"


@pytest.mark.postgres
def test_what_stdout_cannot_hold_is_refused(tmp_path):
    chunked = write_config(
        tmp_path,
        pg_source(),
        "- {name: s, table: t, mode: chunked, chunk_column: id, destination: {type: stdout}}\n",
    )
    assert b"a stdout destination takes one stream: not mode chunked or parallel" in _run(chunked).stderr
    two = write_config(
        tmp_path,
        pg_source(),
        "- {name: a, table: t, destination: {type: stdout}}\n- {name: b, table: u, destination: {type: stdout}}\n",
    )
    ran = _run(two)
    assert ran.returncode == 2 and b"only one export may write to stdout (got a, b)" in ran.stderr
    one = write_config(tmp_path, pg_source(), "- {name: a, table: t, destination: {type: stdout}}\n")
    assert b"--validate reads the parts back" in _run(one, "--validate").stderr


@pytest.mark.postgres
def test_apply_keeps_stdout_for_the_file_too(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int)")
    pg.execute(f"INSERT INTO {table} VALUES (1), (2)")
    config = write_config(
        tmp_path,
        pg_source(),
        f"- {{name: s, query: 'SELECT * FROM {table}', format: csv, destination: {{type: stdout}}}}\n",
    )
    applied = subprocess.run(
        [sys.executable, "-m", "rivet", "apply", "-c", str(config), "--json"], capture_output=True, check=False
    )
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.decode().splitlines() == ['"id"', "1", "2"]
    assert _summary(applied.stderr)["exports"][0]["rows"] == 2
    in_children = subprocess.run(
        [sys.executable, "-m", "rivet", "apply", "-c", str(config), "--parallel-export-processes"],
        capture_output=True,
        check=False,
    )
    assert in_children.returncode == 2 and b"cannot run in a child process" in in_children.stderr
    assert in_children.stdout == b""
