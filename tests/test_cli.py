"""The command-line contract: exit codes, --json shape, a --help that does not load the engine."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rivet
from tests.conftest import pg_url
from tests.outputs import run_rivet


def rivet_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_rivet(*args, timeout=120, cwd=cwd)


@pytest.fixture
def sqlite_config(tmp_path: Path) -> Path:
    db = tmp_path / "shop.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE items (id INTEGER, name TEXT, price DECIMAL(8,2))")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"item {i}", f"{i}.25") for i in range(1, 101)])
    conn.execute("CREATE TABLE weird (id INTEGER)")
    conn.execute("INSERT INTO weird VALUES ('not a number')")
    conn.commit()
    conn.close()
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            """
            source: {type: sqlite, path: shop.db}
            exports:
              - name: items
                table: items
                destination: out/items
              - name: items_csv
                query: SELECT id, name FROM items WHERE id <= ${LIMIT}
                format: csv
                destination: out/items_csv
            """
        )
    )
    return config


def test_help_does_not_import_the_native_module_or_pyarrow() -> None:
    code = (
        "import sys\n"
        "from rivet.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', 'rivet._native' in sys.modules, 'pyarrow' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOADED False False" in proc.stderr
    assert "run" in proc.stdout and "demo" in proc.stdout


def test_version_matches_the_package_and_the_native_module() -> None:
    from rivet import _native

    proc = rivet_cli("--version")
    assert proc.returncode == 0
    expected = f"rivet {rivet.__version__} (native module {_native.__version__}, {_native.build_profile} build)"
    assert proc.stdout.strip() == expected
    assert _native.__version__ == rivet.__version__


def test_successful_run_exits_0_and_prints_json(sqlite_config: Path) -> None:
    proc = rivet_cli("run", "-c", str(sqlite_config), "--json", "-p", "LIMIT=10")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "success" and doc["exit_code"] == 0
    assert doc["total_rows"] == 110
    assert set(doc) == {
        "status",
        "exit_code",
        "config",
        "parallel_mode",
        "started_at",
        "duration_s",
        "rows_per_second",
        "success_count",
        "failed_count",
        "total_rows",
        "total_files",
        "total_bytes",
        "exports",
    }
    first = doc["exports"][0]
    assert set(first) == {
        "name",
        "run_id",
        "status",
        "mode",
        "rows",
        "files",
        "bytes",
        "duration_s",
        "rows_per_second",
        "engine",
        "manifest",
        "peak_rss_mb",
        "error",
        "error_type",
        "exit_code",
        "schema_drift",
        "retries",
        "warnings",
    }
    assert first["retries"] == 0 and first["warnings"] == 0
    assert first["name"] == "items" and first["rows"] == 100 and Path(first["files"][0]).is_file()
    assert "✓ items: 100 rows" in proc.stderr


def test_export_filter_runs_only_the_named_export(sqlite_config: Path) -> None:
    proc = rivet_cli("run", "-c", str(sqlite_config), "-e", "items", "--json", "-p", "LIMIT=5")
    assert proc.returncode == 0, proc.stderr
    assert [e["name"] for e in json.loads(proc.stdout)["exports"]] == ["items"]


def test_unknown_export_name_exits_2_with_a_suggestion(sqlite_config: Path) -> None:
    proc = rivet_cli("run", "-c", str(sqlite_config), "-e", "itemz", "-p", "LIMIT=5")
    assert proc.returncode == 2
    assert "no export named 'itemz'" in proc.stderr and "did you mean 'items'" in proc.stderr


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "rivet.yaml"
    config.write_text("source: {type: sqlite, path: x.db}\nexports:\n  - name: a\n    table: t\n    destinaton: out\n")
    proc = rivet_cli("run", "-c", str(config))
    assert proc.returncode == 2
    assert "exports[0] (a).destinaton: unknown key 'destinaton' (did you mean 'destination'?)" in proc.stderr


def test_unset_parameter_exits_2(sqlite_config: Path) -> None:
    proc = rivet_cli("run", "-c", str(sqlite_config))
    assert proc.returncode == 2
    assert "LIMIT is not set" in proc.stderr


def test_failed_export_exits_1_and_the_others_still_run(tmp_path: Path, sqlite_config: Path) -> None:
    text = sqlite_config.read_text().replace("table: items\n", "table: no_such_table\n", 1)
    sqlite_config.write_text(text)
    proc = rivet_cli("run", "-c", str(sqlite_config), "--json", "-p", "LIMIT=5")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    failed, ok = doc["exports"]
    assert failed["status"] == "failed" and "no such table" in failed["error"] and failed["exit_code"] == 1
    assert ok["status"] == "success" and ok["rows"] == 5
    assert "✗ items" in proc.stderr


def test_value_that_breaks_its_declared_type_exits_3(sqlite_config: Path) -> None:
    text = sqlite_config.read_text().replace("table: items\n", "table: weird\n", 1)
    sqlite_config.write_text(text)
    proc = rivet_cli("run", "-c", str(sqlite_config), "-e", "items", "--json", "-p", "LIMIT=5")
    assert proc.returncode == 3
    error = json.loads(proc.stdout)["exports"][0]["error"]
    assert "column \"id\": declared INTEGER but holds text 'not a number' (row 1)" in error


@pytest.mark.postgres
def test_unsupported_postgres_type_exits_3(tmp_path: Path) -> None:
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f"source: {{type: postgres, url: '{pg_url()}'}}\n"
        "exports:\n  - name: a\n    query: SELECT '1.2.3.4'::inet AS addr\n    destination: out\n"
    )
    proc = rivet_cli("run", "-c", str(config))
    assert proc.returncode == 3
    assert '"addr" (inet)' in proc.stderr
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_demo_runs_without_a_database_server(tmp_path: Path) -> None:
    proc = rivet_cli("demo", "--output", str(tmp_path / "demo"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [e["name"] for e in doc["exports"]] == ["customers", "orders", "orders_csv"]
    assert doc["exports"][0]["rows"] == 1000
    assert (tmp_path / "demo" / "exports" / "orders" / "_SUCCESS").is_file()


def test_schema_config_is_the_json_schema_of_rivet_yaml() -> None:
    proc = rivet_cli("schema", "config")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["title"] == "rivet.yaml" and set(schema["required"]) == {"source", "exports"}
    assert schema["additionalProperties"] is False
    export = schema["$defs"]["ExportConfig"]["properties"]
    assert {"meta_columns", "quality", "on_schema_drift", "parquet", "skip_empty"} <= set(export)
    models = [schema, *schema["$defs"].values()]
    undescribed = [key for m in models for key, v in m.get("properties", {}).items() if not v.get("description")]
    assert undescribed == []  # every key says what it means, for editors


def test_schema_cli_documents_every_command() -> None:
    proc = rivet_cli("schema", "cli")
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "check", "plan", "apply", "validate", "metrics", "journal", "reconcile"):
        assert f"### `rivet {command}`" in proc.stdout
    assert "#### `rivet state reset-chunks`" in proc.stdout and "| `--stuck-checkpoints` |" in proc.stdout


def test_json_errors_give_one_line_per_error_with_its_export_and_a_hint(sqlite_config, tmp_path):
    def json_lines(stderr: str) -> list[dict]:
        return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]

    missing = rivet_cli("--json-errors", "run", "-c", str(sqlite_config))  # ${LIMIT} is not given
    assert missing.returncode == 2
    [error] = json_lines(missing.stderr)
    assert error["code"] == 2 and error["error"] == "ConfigError" and error["export"] is None
    assert "LIMIT" in error["message"] and "rivet check --config-only" in error["hint"]

    sqlite_config.write_text(sqlite_config.read_text().replace("table: items\n", "table: nope\n", 1))
    failed = rivet_cli("--json-errors", "run", "-c", str(sqlite_config), "-p", "LIMIT=3")
    assert failed.returncode == 1
    [error] = json_lines(failed.stderr)
    assert error["export"] == "items" and error["code"] == 1 and "no such table" in error["message"]
    assert error["hint"]

    secret = tmp_path / "secret.yaml"
    secret.write_text(
        "source: {type: postgres, url: 'postgresql://u:hunter2@127.0.0.1:1/db?connect_timeout=2'}\n"
        "exports:\n  - {name: e, query: SELECT 1, destination: out}\n"
    )
    unreachable = rivet_cli("--json-errors", "run", "-c", str(secret))
    [error] = json_lines(unreachable.stderr)
    assert error["export"] == "e" and "reachable" in error["hint"] and "hunter2" not in unreachable.stderr


def test_completions_complete_commands_and_options_in_a_real_bash(tmp_path):
    script = rivet_cli("completions", "bash")
    assert script.returncode == 0 and "_RIVET_COMPLETE=complete_bash" in script.stdout
    (tmp_path / "rivet.bash").write_text(script.stdout)
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "rivet").exists()

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        shell = (
            f"source {tmp_path / 'rivet.bash'}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
            '_rivet_completion rivet; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=60)
        return done.stdout.split()

    assert complete("rivet", "re") == ["reconcile", "repair"]
    assert "--resume" in complete("rivet", "run", "--res")
    assert complete("rivet", "state", "reset") == ["reset", "reset-chunks"]
    assert rivet_cli("completions", "tcsh").returncode == 2
