"""Export modes on every database server: the same body, the same rows."""

from __future__ import annotations

import collections
import json

from tests.chunkrun import rows_in_files
from tests.outputs import assert_time_windows, noons_back, run_rivet, write_config


def test_time_window(database_server, out):
    today, noons = noons_back(10)
    assert_time_windows(database_server.url, database_server.noon_table(noons), out, today, 10)


def test_incremental_runs_export_every_row_including_late_boundary_rows(database_server, tmp_path):
    db = database_server
    t = db.stamped_table()

    def insert(*rows: tuple[int, str | None]) -> None:
        db.sql(f"INSERT INTO {t} VALUES " + ", ".join(f"({i}, {db.stamp(at)})" for i, at in rows))

    def run() -> dict:
        proc = run_rivet("run", "-c", str(config), "--json")
        return json.loads(proc.stdout)["exports"][0] | {"code": proc.returncode, "stderr": proc.stderr}

    insert(*((i, f"2024-01-01 {i:02d}:00:00") for i in range(1, 11)))
    config = write_config(
        tmp_path,
        db.block,
        f"- name: inc\n  table: {t}\n  mode: incremental\n  cursor_column: updated_at\n  destination: out/{{date}}\n",
    )
    first = run()
    assert first["code"] == 0 and first["rows"] == 10, first
    # A late row carrying the boundary value, and a newer one half a second past a whole second.
    insert((11, "2024-01-01 10:00:00"), (12, "2024-01-02 00:00:00.5"))
    second = run()
    assert second["code"] == 0, second
    seen: collections.Counter[tuple[object, ...]] = collections.Counter()
    for r in (first, second):
        seen.update(rows_in_files(r["files"], ["id"]))
    assert {k[0] for k in seen} == set(range(1, 13))
    # Exactly once at the boundary: the late row with the stored value comes, the exported one does not.
    assert seen[(10,)] == 1 and seen[(11,)] == 1 and second["rows"] == 2

    insert((13, None))
    failed = run()
    assert failed["code"] == 3 and "cursor updated_at is NULL in at least 1 row(s)" in failed["error"], failed
    store_cursor = run_rivet("state", "show", "-c", str(config), "--json")
    assert json.loads(store_cursor.stdout)["exports"][0]["cursor"].startswith("2024-01-02 00:00:00.5")

    # The cursor keeps its fraction of a second: a row 0.2 s later is new, nothing before it comes again.
    db.sql(f"DELETE FROM {t} WHERE id = 13")
    insert((14, "2024-01-02 00:00:00.7"))
    third = run()
    assert third["code"] == 0 and sorted(k[0] for k in rows_in_files(third["files"], ["id"])) == [14], third
