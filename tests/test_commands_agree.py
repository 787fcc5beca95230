"""What the commands and their help say is what they do: flags wherever written, booleans as documented."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import rivet
from tests.outputs import assert_failpoint_ended, run_rivet


@pytest.fixture
def config(tmp_path: Path) -> Path:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER)")
        conn.executemany("INSERT INTO items VALUES (?)", [(i,) for i in range(5)])
    path = tmp_path / "rivet.yaml"
    path.write_text(
        f"source: {{type: sqlite, path: {db}}}\nexports:\n  - {{name: items, table: items, destination: out}}\n"
    )
    return path


def test_json_errors_works_after_the_command_and_keeps_the_human_line(tmp_path):
    missing = tmp_path / "nope.yaml"
    for args in (("--json-errors", "run", "-c", str(missing)), ("run", "-c", str(missing), "--json-errors")):
        ran = run_rivet(*args)
        assert ran.returncode == 2, ran.stderr
        lines = ran.stderr.splitlines()
        document = json.loads(next(line for line in lines if line.startswith("{")))
        assert document["code"] == 2 and document["error"] == "ConfigError"
        assert any(line.startswith("error: cannot read config file") for line in lines)  # also the human line


@pytest.mark.parametrize(("key", "value"), [("skip_empty", "yes"), ("keep_superseded_parts", '"no"'),
                                            ("skip_empty", "1"), ("chunk_checkpoint", "on")])  # fmt: skip
def test_booleans_are_only_true_and_false(config, key, value):
    text = config.read_text().replace("destination: out}", f"destination: out, {key}: {value}}}")
    config.write_text(text)
    checked = run_rivet("check", "-c", str(config), "--config-only")
    assert checked.returncode == 2 and f"{key}: expected true or false" in checked.stderr, checked.stderr


def test_a_variable_that_expands_to_true_is_a_boolean(config):
    config.write_text(config.read_text().replace("destination: out}", "destination: out, skip_empty: '${SKIP}'}"))
    ran = run_rivet("check", "-c", str(config), "--config-only", env={"SKIP": "true"})
    assert ran.returncode == 0, ran.stderr


def test_every_key_of_the_original_tool_rivet_does_not_take_is_named_at_once(config):
    config.write_text(
        config.read_text().replace(
            "destination: out}", "destination: out, chunk_size_memory_mb: 64, verify: true, split: 2}"
        )
    )
    checked = run_rivet("check", "-c", str(config), "--config-only")
    assert checked.returncode == 2
    for key in ("chunk_size_memory_mb", "verify", "split"):
        assert f"{key}: " in checked.stderr, checked.stderr


def test_help_says_every_format_and_every_exit_code():
    assert "Delta or Iceberg" in run_rivet("--help").stdout
    text = " ".join(run_rivet("run", "-h").stdout.split())
    assert "4 the columns changed" in text and "130 interrupted" in text


def test_a_state_folder_that_does_not_exist_yet_is_made(config, tmp_path):
    result = rivet.export(f"sqlite:///{config.parent / 'shop.db'}", table="items", destination=str(tmp_path / "o"),
                          state_dir=str(tmp_path / "new" / "state"))  # fmt: skip
    assert result.rows == 5 and (tmp_path / "new" / "state" / ".rivet_state.db").exists()


def _pg_config(tmp_path: Path, export: str) -> Path:
    from tests.conftest import pg_url

    path = tmp_path / "pg.yaml"
    path.write_text(f'source: {{type: postgres, url: "{pg_url()}"}}\nexports:\n  - {export}\n')
    return path


@pytest.mark.postgres
def test_json_counts_the_warnings_said_and_reports_the_drift_that_stopped_an_export(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int, note text)")
    pg.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    config = _pg_config(tmp_path, f"{{name: d, query: 'SELECT id FROM {table}', destination: out}}")
    assert run_rivet("run", "-c", str(config)).returncode == 0
    config.write_text(config.read_text().replace("SELECT id FROM", "SELECT id, note FROM"))
    warned = run_rivet("run", "-c", str(config), "--json")
    said = [line for line in warned.stderr.splitlines() if line.startswith("WARNING: export d")]
    assert said and json.loads(warned.stdout)["exports"][0]["warnings"] == len(said)
    config.write_text(config.read_text().replace("SELECT id, note FROM", "SELECT note FROM"))
    config.write_text(config.read_text().replace("destination: out}", "destination: out, on_schema_drift: fail}"))
    stopped = run_rivet("run", "-c", str(config), "--json")
    result = json.loads(stopped.stdout)["exports"][0]
    assert stopped.returncode == 4 and result["schema_drift"]["removed"] == ["id: int32"]


@pytest.mark.postgres
def test_a_run_killed_outright_is_marked_interrupted_once_its_lease_is_taken_over(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    config = _pg_config(tmp_path, f"{{name: k, table: {table}, destination: out}}")
    killed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": "after_part_write:crash"})
    assert_failpoint_ended(killed, "after_part_write:crash", -9)
    assert run_rivet("run", "-c", str(config)).returncode == 0  # takes over the dead run's lease
    runs = json.loads(run_rivet("metrics", "-c", str(config), "--json").stdout)["runs"]
    assert [r["status"] for r in runs] == ["success", "interrupted"]
    assert "killed" in runs[1]["error"]


@pytest.mark.postgres
@pytest.mark.s3
def test_a_bucket_that_does_not_exist_fails_before_anything_is_read(pg, s3_endpoint, tmp_path, monkeypatch):
    from tests.conftest import s3_destination

    monkeypatch.setenv("RIVET_T_KEY", "testing")
    monkeypatch.setenv("RIVET_T_SECRET", "testing")
    destination = json.dumps(s3_destination("no-such-bucket-here", s3_endpoint, "x"))
    # The query fails if it is ever run: the bucket is checked first.
    config = _pg_config(tmp_path, f"{{name: b, query: 'SELECT 1 / 0 AS x', destination: {destination}}}")
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 1 and "the bucket or container no-such-bucket-here does not exist" in ran.stderr
    assert "division by zero" not in ran.stderr


def test_a_connection_error_is_said_once(tmp_path):
    config = tmp_path / "rivet.yaml"
    config.write_text(
        "source: {type: postgres, url: 'postgresql://u@127.0.0.1:1/d?sslmode=disable&connect_timeout=2'}\n"
        "exports:\n  - {name: x, query: SELECT 1, destination: out}\n"
    )
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 1
    assert ran.stderr.count("could not connect") == 1, ran.stderr  # not once more for the progress estimate


def test_table_and_export_in_a_destination_are_the_export_name_as_the_readme_says(config):
    config.write_text(
        config.read_text()
        .replace("name: items", "name: all_items")
        .replace("destination: out}", "destination: 'out/{table}/{export}'}")
    )
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 0, ran.stderr
    folder = config.parent / "out" / "all_items" / "all_items"
    assert (folder / "_SUCCESS").exists(), sorted(str(p) for p in (config.parent / "out").rglob("*"))
