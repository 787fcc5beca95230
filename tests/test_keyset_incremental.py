"""keyset_incremental: each chunked run reads only the keys after the highest one published before.

Every test reads the manifest's files back and compares them with the table: each row
once over all runs, whichever key, server or interruption.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.chunkrun import done_chunks, kill_after_chunks, resume_and_check, rows_in_files
from tests.outputs import run_export_json, run_rivet, write_config
from tests.sources import Source, numbers

Rows = collections.Counter[tuple[object, ...]]


def keyed(source: Source, key: str, n: int) -> tuple[str, list[str]]:
    """A table of ``n`` rows keyed by ``key``: ``int_int`` (k, u) or ``text`` (k), keys growing with ``v``."""
    if key == "int_int":
        return source.keyed_table("int_int", n)
    text = "varchar(20) COLLATE utf8mb4_general_ci" if source.kind == "mysql" else 'text COLLATE "und-x-icu"'
    table = source.sql_table(f"CREATE TABLE {{t}} (k {text} NOT NULL PRIMARY KEY, v int NOT NULL)")
    add_rows(source, table, key, 1, n)
    return table, ["k"]


def add_rows(source: Source, table: str, key: str, first: int, last: int) -> None:
    """Rows ``v`` = first..last, each keyed above every row before it."""
    series = f"generate_series({first}, {last}) AS i" if source.kind == "postgres" else _range(first, last)
    if key == "int_int":
        # The keyed table's k is mod(i, 7): 7 and up are above every row it was made with.
        source.sql(f"INSERT INTO {table} (k, u, v) SELECT 7 + i, i, i FROM {series}")
    else:
        padded = "'k' || lpad(i::text, 7, '0')" if source.kind == "postgres" else "CONCAT('k', LPAD(i, 7, '0'))"
        source.sql(f"INSERT INTO {table} (k, v) SELECT {padded}, i FROM {series}")


def _range(first: int, last: int) -> str:
    return f"(SELECT i + {first - 1} AS i FROM ({numbers(last - first + 1)}) AS n) AS r"


def table_rows(source: Source, table: str, columns: list[str]) -> Rows:
    return collections.Counter(tuple(row) for row in source.sql(f"SELECT {', '.join(columns)}, v FROM {table}"))


def manifest_files(out: Path) -> list[str]:
    return [str(out / p["name"]) for p in json.loads((out / "manifest.json").read_text())["parts"]]


def stored_mark(home: Path) -> object:
    with contextlib.closing(sqlite3.connect(home / ".rivet_state.db")) as conn:
        found = conn.execute("SELECT value FROM cursors").fetchall()
    return json.loads(found[0][0]) if found else None


def unfinished_runs(state: Path) -> int:
    with contextlib.closing(sqlite3.connect(state)) as conn:
        return int(conn.execute("SELECT count(*) FROM chunk_runs WHERE status = 'in_progress'").fetchone()[0])


def config(source: Source, home: Path, what: str, keys: list[str], extra: str = "", chunk_size: int = 700) -> Path:
    return write_config(
        home,
        source.block,
        f"- name: t\n  {what}\n  mode: chunked\n  chunk_by_key: {json.dumps(keys)}\n  keyset_incremental: true\n"
        f"  chunk_size: {chunk_size}\n  parallel: 2\n  destination: out\n{extra}",
    )


@pytest.mark.parametrize("key", ["int_int", "text"])
def test_each_run_reads_only_the_keys_after_the_last_runs(database_server, tmp_path, key):
    source = database_server
    table, columns = keyed(source, key, 3000)
    path = config(source, tmp_path, f"table: {table}", columns)
    out = tmp_path / "out"

    first = run_export_json(path)
    assert first["code"] == 0, first["stderr"]
    assert rows_in_files(manifest_files(out), [*columns, "v"]) == table_rows(source, table, columns)
    order = ", ".join(f"{c} DESC" for c in columns)
    highest = source.sql(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order} LIMIT 1")[0]
    assert stored_mark(tmp_path) == list(highest)

    add_rows(source, table, key, 3001, 4500)
    second = run_export_json(path)
    assert second["code"] == 0, second["stderr"]
    assert second["rows"] == 1500
    everything = rows_in_files(manifest_files(out), [*columns, "v"])
    assert everything == table_rows(source, table, columns)  # each row once over both runs
    assert max(v for *_, v in everything) == 4500

    # Nothing new: nothing read, what was published stays.
    before = sorted(manifest_files(out))
    third = run_export_json(path)
    assert third["code"] == 0 and third["rows"] == 0, third["stderr"]
    assert sorted(manifest_files(out)) == before and (out / "_SUCCESS").exists()
    assert stored_mark(tmp_path) == ([7 + 4500, 4500] if key == "int_int" else ["k0004500"])


def test_runs_killed_and_resumed_read_their_window_once_and_leave_later_keys_to_the_next(database_server, tmp_path):
    source = database_server
    # Reads slowed to 0.2 ms a row, 30 chunks: a run lasts long enough to be killed halfway.
    table, columns = keyed(source, "int_int", 9000)
    what = f'query: "SELECT k, u, v, {source.slowly("v")} AS s FROM {table}"'
    path = config(source, tmp_path, what, columns, "  chunk_checkpoint: true\n  max_file_size: 30KB\n", chunk_size=300)
    state = tmp_path / ".rivet_state.db"

    before = kill_after_chunks(path, 3)
    assert unfinished_runs(state) == 1, "the run ended before it was killed: make it longer"
    # Keys added while the run was down are after its window: the resumed run leaves them.
    add_rows(source, table, "int_int", 9001, 9500)
    files = resume_and_check(path, before)
    assert rows_in_files(files, [*columns, "v"]) == table_rows(source, f"{table} WHERE v <= 9000", columns)

    # A run after a mark, killed and resumed: its window starts after the mark and ends where it was planned.
    add_rows(source, table, "int_int", 9501, 15000)
    kill_after_chunks(path, done_chunks(state) + 3)
    assert unfinished_runs(state) == 1, "the run ended before it was killed: make it longer"
    add_rows(source, table, "int_int", 15001, 15100)
    resumed = run_export_json(path, "--resume")
    assert resumed["code"] == 0 and resumed["rows"] == 6000, resumed["stderr"]
    last = run_export_json(path)
    assert last["code"] == 0 and last["rows"] == 100, last["stderr"]
    assert rows_in_files(manifest_files(tmp_path / "out"), [*columns, "v"]) == table_rows(source, table, columns)


def test_a_destination_the_mark_does_not_describe_is_read_again_and_replaced(database_server, tmp_path):
    source = database_server
    table, columns = keyed(source, "int_int", 2000)
    incremental = config(source, tmp_path, f"table: {table}", columns)
    full = re.sub(r"^ *keyset_incremental: true\n", "", incremental.read_text(), flags=re.MULTILINE)
    out = tmp_path / "out"

    def run(yaml: str, rows: int) -> None:
        incremental.write_text(yaml)
        ran = run_export_json(incremental)
        assert ran["code"] == 0 and ran["rows"] == rows, ran["stderr"]
        # Whatever came before, each row of the table once.
        assert rows_in_files(manifest_files(out), [*columns, "v"]) == table_rows(source, table, columns)

    keyed_yaml = incremental.read_text()
    run(full, 2000)
    run(keyed_yaml, 2000)  # the full run's parts hold no mark: read again, replaced
    add_rows(source, table, "int_int", 2001, 2300)
    run(keyed_yaml, 300)
    run(full, 2300)
    run(keyed_yaml, 2300)  # the stored mark is not the full run's parts': read again, replaced
    # repair republishes the last run's parts alone: refused where runs add to each other.
    repair = run_rivet("repair", "-c", str(incremental), "-e", "t", "--execute")
    assert repair.returncode == 2 and "adds each run's parts to those before" in repair.stderr, repair.stderr
    reset = run_rivet("state", "reset", "-c", str(incremental), "-e", "t")
    assert reset.returncode == 0, reset.stderr
    run(keyed_yaml, 2300)
    add_rows(source, table, "int_int", 2301, 2400)
    run(keyed_yaml, 100)


def test_a_new_dated_folder_gets_the_keys_after_the_mark(database_server, tmp_path):
    source = database_server
    table, columns = keyed(source, "text", 1000)
    path = config(source, tmp_path, f"table: {table}", columns)
    path.write_text(path.read_text().replace("destination: out\n", "destination: out/{date}\n"))
    first = run_export_json(path)
    assert first["code"] == 0 and first["rows"] == 1000, first["stderr"]
    (day,) = (tmp_path / "out").iterdir()
    day.rename(tmp_path / "yesterday")  # the next day's folder is a new one

    add_rows(source, table, "text", 1001, 1200)
    second = run_export_json(path)
    assert second["code"] == 0 and second["rows"] == 200, second["stderr"]
    assert rows_in_files(manifest_files(day), [*columns, "v"]) == table_rows(source, f"{table} WHERE v > 1000", columns)


def test_rows_a_query_gives_a_null_key_fail_the_run_and_publish_nothing(database_server, tmp_path):
    source = database_server
    left = source.sql_table("CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL)")
    right = source.sql_table("CREATE TABLE {t} (k int PRIMARY KEY, lid int NOT NULL)")
    series = "generate_series(1, 100) AS i" if source.kind == "postgres" else f"({numbers(100)}) AS n"
    source.sql(f"INSERT INTO {left} SELECT i, i FROM {series}")
    source.sql(f"INSERT INTO {right} SELECT i, i FROM {series} WHERE mod(i, 2) = 0")
    what = f'query: "SELECT r.k, l.v FROM {left} l LEFT JOIN {right} r ON r.lid = l.id"'
    path = config(source, tmp_path, what, ["k"])

    failed = run_export_json(path)
    assert failed["code"] == 3, failed["stderr"]
    assert "50 row(s) of the query have a NULL in the key (k)" in failed["stderr"]
    out = tmp_path / "out"
    assert not (out / "_SUCCESS").exists() and not list(out.rglob("*.parquet"))
    assert stored_mark(tmp_path) is None


@pytest.mark.parametrize(
    ("lines", "refusal"),
    [
        (
            "  mode: chunked\n  chunk_column: id\n  keyset_incremental: true\n",
            "keyset_incremental requires chunk_by_key",
        ),
        ("  mode: full\n  keyset_incremental: true\n", "keyset_incremental require(s) mode: chunked"),
    ],
    ids=["without chunk_by_key", "mode full"],
)
def test_keyset_incremental_without_a_keyset_is_refused_by_name(tmp_path, lines, refusal):
    path = write_config(tmp_path, "{type: sqlite, path: x.db}", f"- name: t\n  table: t\n{lines}  destination: out\n")
    refused = run_rivet("check", "-c", str(path), "--config-only")
    assert refused.returncode == 2 and refusal in refused.stderr, refused.stderr
