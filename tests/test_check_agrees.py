"""``rivet check`` and ``check --config-only`` refuse what ``rivet run`` refuses, and check every export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import MYSQL_URL, my_query, pg_url
from tests.outputs import run_rivet

pytestmark = pytest.mark.postgres

# Each export is refused by run before it reads; no server is needed to know it.
OFFLINE_REFUSALS = {
    "gcs_delta": (
        "{name: gcs_delta, table: t, format: delta, destination: 'gs://bucket/t'}",
        "format: delta is written",
    ),
    "sftp": ("{name: sftp, table: t, destination: 'sftp://host/out'}", "sftp:// cannot make a file visible"),
}


def _write(path: Path, source: str, exports: list[str]) -> Path:
    path.write_text(f"source: {source}\nexports:\n" + "".join(f"  - {e}\n" for e in exports))
    return path


def test_config_only_finds_every_refusal_of_every_export_and_run_agrees(tmp_path):
    config = _write(
        tmp_path / "rivet.yaml",
        f'{{type: postgres, url: "{pg_url()}"}}',
        [e for e, _ in OFFLINE_REFUSALS.values()] + ["{name: fine, table: t, destination: out}"],
    )
    checked = run_rivet("check", "-c", str(config), "--config-only", "--json")
    assert checked.returncode == 2, checked.stderr
    doc = json.loads(checked.stdout)
    assert doc["valid"] is False and set(doc["problems"]) == set(OFFLINE_REFUSALS)
    for name, (_, why) in OFFLINE_REFUSALS.items():
        assert why in doc["problems"][name][0]
        ran = run_rivet("run", "-c", str(config), "-e", name)
        assert ran.returncode == 2 and why in ran.stderr, ran.stderr


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (f'{{type: mysql, url: "{pg_url()}"}}', "a MySQL URL starts with mysql://"),
        ("{type: postgres, url: 'postgresql://u@h/d?frobnicate=1'}", "a parameter rivet does not know"),
        ("{type: postgres, url: 'postgresql+psycopg://u:pw@h/d'}", "not postgresql+psycopg://"),
        (f'{{type: mysql, url: "{MYSQL_URL}"}}', "snapshot: consistent needs PostgreSQL"),
    ],
    ids=["type-and-url", "unknown-parameter", "sqlalchemy-url", "mysql-snapshot"],
)
def test_config_only_and_run_refuse_a_source_alike(tmp_path, source, why):
    snapshot = ", snapshot: consistent" if "snapshot" in why else ""
    export = f"{{name: e, table: t, mode: chunked, chunk_column: id{snapshot}, destination: out}}"
    config = _write(tmp_path / "rivet.yaml", source, [export])
    checked = run_rivet("check", "-c", str(config), "--config-only")
    assert checked.returncode == 2 and why in checked.stdout, checked.stdout + checked.stderr
    assert "pw" not in checked.stdout + checked.stderr
    ran = run_rivet("run", "-c", str(config))
    assert ran.returncode == 2 and why in ran.stderr, ran.stderr


@pytest.mark.mysql
def test_check_refuses_the_columns_run_refuses(my_table, my_conn, pg, pg_table, tmp_path):
    unsigned = my_table("CREATE TABLE {t} (id INT PRIMARY KEY, hits BIGINT UNSIGNED)")
    my_query(my_conn, f"INSERT INTO {unsigned} VALUES (1, 5)")
    stamped = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, at timestamptz)")
    mysql = _write(
        tmp_path / "mysql.yaml",
        f'{{type: mysql, url: "{MYSQL_URL}"}}',
        [f"{{name: ice, table: {unsigned}, format: iceberg, destination: ice}}"],
    )
    postgres = _write(
        tmp_path / "pg.yaml",
        f'{{type: postgres, url: "{pg_url()}"}}',
        [f"{{name: delta, table: {stamped}, format: delta, partition_by: at, destination: delta}}"],
    )
    for config, why in ((mysql, "Iceberg has no unsigned integers"), (postgres, "format: delta partitions by")):
        checked = run_rivet("check", "-c", str(config))
        ran = run_rivet("run", "-c", str(config))
        assert checked.returncode == ran.returncode == 2, checked.stdout + checked.stderr
        assert why in checked.stdout and why in ran.stderr


def test_check_goes_on_after_an_export_that_fails_and_names_each(pg, pg_table, tmp_path):
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY)")
    config = _write(
        tmp_path / "rivet.yaml",
        f'{{type: postgres, url: "{pg_url()}"}}',
        [
            "{name: broken, query: 'SELECT * FROM no_such_table_here', destination: a}",
            f"{{name: good, table: {table}, destination: b}}",
        ],
    )
    human = run_rivet("check", "-c", str(config))
    assert human.returncode == 1
    assert "✗ broken: " in human.stdout and "no_such_table_here" in human.stdout and "✓ good: 1 columns" in human.stdout
    doc = json.loads(run_rivet("check", "-c", str(config), "--json").stdout)
    by_name = {e["export"]: e for e in doc["exports"]}
    assert by_name["broken"]["verdict"] == "error" and by_name["broken"]["error_type"] == "QueryError"
    assert by_name["good"]["verdict"] == "ok" and by_name["good"]["exit_code"] == 0
    # --json-errors names the export each error belongs to.
    errors = run_rivet("check", "-c", str(config), "--json-errors")
    documents = [json.loads(line) for line in errors.stderr.splitlines() if line.startswith("{")]
    assert [(d["export"], d["error"]) for d in documents] == [("broken", "QueryError")], errors.stderr
