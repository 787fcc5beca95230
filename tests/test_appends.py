"""Appending runs into one folder: every source row version exactly once, by glob and by manifest."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.conftest import MYSQL_URL, my_query, pg_url
from tests.outputs import rows_by_glob, rows_by_manifest, run_export_json, run_rivet, write_config

COLUMNS = ["id", "v", "updated_at"]
BASE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


class Table:
    """The same statements on PostgreSQL or MariaDB."""

    def __init__(self, kind: str, pg, my_conn, name: str) -> None:
        self.kind, self.pg, self.my, self.name = kind, pg, my_conn, name

    def run(self, sql: str) -> list[tuple]:
        if self.kind == "postgres":
            cur = self.pg.execute(sql)
            return cur.fetchall() if cur.description else []
        return my_query(self.my, sql)

    def stamp(self, hours: float) -> str:
        at = BASE + dt.timedelta(hours=hours)
        if self.kind == "postgres":
            return f"timestamptz '{at.isoformat()}'"
        return f"TIMESTAMP '{at.strftime('%Y-%m-%d %H:%M:%S.%f')}'"

    def versions(self) -> set[tuple]:
        rows = self.run(f"SELECT id, v, updated_at FROM {self.name}")
        return {(i, v, u if u.tzinfo else u.replace(tzinfo=dt.timezone.utc)) for i, v, u in rows}


@pytest.fixture(params=["postgres", pytest.param("mysql", marks=pytest.mark.mysql)])
def table(request, pg_table, my_table):
    kind = request.param
    if kind == "postgres":
        pg = request.getfixturevalue("pg")
        name = pg_table("CREATE TABLE {t} (id int, v text, updated_at timestamptz)")
        return Table(kind, pg, None, name)
    my = request.getfixturevalue("my_conn")
    name = my_table("CREATE TABLE {t} (id INT, v VARCHAR(20), updated_at DATETIME(6))")
    return Table(kind, None, my, name)


def config_for(tmp_path: Path, t: Table, body: str) -> Path:
    url = pg_url() if t.kind == "postgres" else MYSQL_URL
    return write_config(tmp_path, {"type": t.kind, "url": url}, body)


def normalized(counter) -> dict:
    return {(i, v, u if u.tzinfo else u.replace(tzinfo=dt.timezone.utc)): n for (i, v, u), n in counter.items()}


def test_five_incremental_runs_into_one_folder_read_back_exactly_once(table, tmp_path):
    t = table
    values = ", ".join(f"({i}, 'v0', {t.stamp(i)})" for i in range(1, 101))
    t.run(f"INSERT INTO {t.name} VALUES {values}")
    config = config_for(
        tmp_path,
        t,
        f"- name: inc\n  table: {t.name}\n  mode: incremental\n  cursor_column: updated_at\n  destination: out/inc\n",
    )
    exported: set[tuple] = set()
    top = 100.0
    for run in range(1, 6):
        exported |= t.versions()
        result = run_export_json(config)
        assert result["code"] == 0, result["stderr"]
        # Between runs: new rows, updated rows (a new version each), and a late row carrying the
        # boundary value the last run stopped at.
        t.run(f"INSERT INTO {t.name} VALUES ({1000 + run}, 'late', {t.stamp(top)})")
        top += 10
        t.run(f"UPDATE {t.name} SET v = 'v{run}', updated_at = {t.stamp(top)} WHERE id IN ({run}, {run + 10})")
        new = ", ".join(f"({200 + run * 10 + k}, 'n{run}', {t.stamp(top + k / 10)})" for k in range(3))
        t.run(f"INSERT INTO {t.name} VALUES {new}")
        top += 1
    exported |= t.versions()
    final = run_export_json(config)
    assert final["code"] == 0, final["stderr"]
    out = tmp_path / "out" / "inc"
    expected = {version: 1 for version in exported}
    assert normalized(rows_by_glob(out, "inc", COLUMNS)) == expected
    assert normalized(rows_by_manifest(out, COLUMNS)) == expected
    assert (out / "_SUCCESS").exists()
    assert len(list((out / "_rivet" / "runs").iterdir())) == 6
    checked = run_rivet("validate", "-c", str(config))
    assert checked.returncode == 0, checked.stderr

    # Nothing new: no data file, status empty, the folder still complete.
    before = sorted(p.name for p in out.iterdir())
    empty = run_export_json(config)
    assert empty["code"] == 0 and empty["status"] == "empty" and empty["files"] == [], empty
    assert sorted(p.name for p in out.iterdir()) == before
    assert normalized(rows_by_manifest(out, COLUMNS)) == expected
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] == empty["run_id"]


def test_time_window_appends_to_its_folder_and_starts_over_in_a_new_one(pg, pg_table, tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    t = pg_table(
        "CREATE TABLE {t} AS SELECT i AS id, now() - i * interval '1 hour' AS at FROM generate_series(0, 23) AS i"
    )
    body = f"- name: w\n  table: {t}\n  mode: time_window\n  time_column: at\n  days_window: 2\n"
    first_config = config_for(tmp_path, Table("postgres", pg, None, t), body + "  destination: out/a\n")
    assert run_export_json(first_config)["code"] == 0
    later = now + dt.timedelta(minutes=1)
    pg.execute(f"INSERT INTO {t} VALUES (100, %s), (101, %s)", (later, later + dt.timedelta(minutes=1)))
    second = run_export_json(first_config)
    assert second["code"] == 0 and second["rows"] == 2, second
    ids = rows_by_glob(tmp_path / "out" / "a", "w", ["id"])
    assert ids == rows_by_manifest(tmp_path / "out" / "a", ["id"])
    assert ids == {(i,): 1 for i in [*range(24), 100, 101]}
    # Another folder (the next {date}, say) gets the whole window again.
    other = config_for(tmp_path, Table("postgres", pg, None, t), body + "  destination: out/b\n")
    assert run_export_json(other)["rows"] == 26
