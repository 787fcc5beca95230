"""Helpers of the chunked-engine tests: rows read back from files, and a run killed then resumed."""

from __future__ import annotations

import collections
import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from tests.outputs import run_rivet, start_rivet

# How long wait_until polls before it gives up: a safety net for a run that never gets there.
WAIT_LIMIT_S = 300.0


def rows_in_files(files: list[str], columns: list[str]) -> collections.Counter[tuple[object, ...]]:
    """Every row of ``columns`` in the Parquet ``files``, counted."""
    counter: collections.Counter[tuple[object, ...]] = collections.Counter()
    for f in files:
        table = pq.read_table(f, columns=columns)
        counter.update(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    return counter


def done_chunks(state: Path, export: str | None = None) -> int:
    """Chunks marked done in the state store ``state`` (of ``export``'s runs, or of any export)."""
    if not state.exists():
        return 0
    sql = "SELECT count(*) FROM chunk_tasks WHERE status = 'done'"
    args: tuple[str, ...] = ()
    if export is not None:
        sql += " AND run_id IN (SELECT run_id FROM chunk_runs WHERE export_name = ?)"
        args = (export,)
    with contextlib.closing(sqlite3.connect(state)) as conn:
        try:
            return int(conn.execute(sql, args).fetchone()[0])
        except sqlite3.OperationalError:  # not created yet, or locked by the writer for a moment
            return 0


def chunk_runs(state: Path, export: str) -> int:
    """Chunked runs of ``export`` registered in the state store ``state``."""
    if not state.exists():
        return 0
    with contextlib.closing(sqlite3.connect(state)) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM chunk_runs WHERE export_name = ?", (export,)).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def wait_until(condition: Callable[[], bool], what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` until it holds. Fails if ``proc`` exits without it holding, or after a
    deadline far beyond any healthy run (a safety net under pytest-timeout, not a speed check)."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while True:
        exited = proc is not None and proc.poll() is not None
        if condition():
            return
        if exited:
            raise AssertionError(f"the process exited with status {proc.returncode} before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting until {what}")
        time.sleep(0.02)


def wait_for_done_chunks(
    state: Path, done: int, export: str | None = None, proc: subprocess.Popen | None = None
) -> None:
    """Wait until the state store ``state`` has ``done`` chunks marked done (of ``export``)."""
    wait_until(lambda: done_chunks(state, export) >= done, f"{done} chunk(s) are marked done in {state}", proc)


def running_chunks(state: Path) -> int:
    """Chunks marked running (claimed, not yet in a published part) in the state store ``state``."""
    with contextlib.closing(sqlite3.connect(state)) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM chunk_tasks WHERE status = 'running'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped by a signal (state T in /proc)."""
    try:
        tasks = [Path(t, "stat").read_text() for t in Path(f"/proc/{pid}/task").iterdir()]
    except FileNotFoundError:  # a thread ended between the listing and the read: look again
        return False
    return all(stat.rsplit(")", 1)[1].split()[0] == "T" for stat in tasks)


def kill_after_chunks(
    config: Path, done: int, *, while_reading: bool = False, args: tuple[str, ...] = ()
) -> dict[int, str]:
    """Run ``config`` (with ``args``), SIGKILL it once ``done`` chunks are checkpointed (with
    ``while_reading``, at a moment a chunk is also being read); the done chunks and their parts."""
    state = config.parent / ".rivet_state.db"
    proc = start_rivet("run", "-c", str(config), *args, stdout=None, text=False)
    try:
        wait_for_done_chunks(state, done, proc=proc)
        while while_reading:
            wait_until(lambda: running_chunks(state) > 0, "a chunk is being read", proc)
            # Frozen, the run cannot finish that chunk between the look and the kill. SIGSTOP lands
            # asynchronously: look again only once the kernel says every thread is stopped.
            proc.send_signal(signal.SIGSTOP)
            wait_until(lambda: stopped(proc.pid), "the run is stopped")
            if running_chunks(state) > 0:
                break
            proc.send_signal(signal.SIGCONT)
    except AssertionError as e:
        proc.kill()
        _, stderr = proc.communicate(timeout=60)
        raise AssertionError(f"{e}\n{stderr.decode(errors='replace')}") from None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    with contextlib.closing(sqlite3.connect(state)) as conn:
        return dict(conn.execute("SELECT chunk_index, parts FROM chunk_tasks WHERE status = 'done'").fetchall())


def resume_and_check(config: Path, before: dict[int, str], args: tuple[str, ...] = ()) -> list[str]:
    """``rivet run --resume`` (with ``args``); assert no chunk done before was read again and each chunk
    was committed once, with nothing visible outside the manifest. The files of the manifest."""
    resumed = run_rivet("run", "-c", str(config), "--resume", "--json", *args)
    assert resumed.returncode == 0, resumed.stderr
    with contextlib.closing(sqlite3.connect(config.parent / ".rivet_state.db")) as conn:
        tasks = conn.execute("SELECT chunk_index, status, attempts, parts, rows FROM chunk_tasks").fetchall()
    for index, parts in before.items():
        row = next(r for r in tasks if r[0] == index)
        assert row[3] == parts and row[2] == 1, "a chunk done before the kill was read again"
    assert all(status == "done" for _, status, _, _, _ in tasks)
    out = config.parent / "out"
    parts = json.loads((out / "manifest.json").read_text())["parts"]
    names = [p["name"] for p in parts]
    # The files of one published part (one per partition folder, rotations) share its name and chunks.
    published = {re.sub(r"(_part\d+)?\.parquet$", "", p["name"].rsplit("/", 1)[-1]): p["chunks"] for p in parts}
    held = sorted(c for chunks in published.values() for c in chunks)
    assert len(held) == len(set(held)), "a chunk is in two parts of the manifest"
    # A chunk that read no rows (a query's NULL-key chunk, say) has no file where parts are
    # written per partition folder; every other chunk is in one part.
    with_rows = {index for index, _, _, _, rows in tasks if rows}
    assert with_rows <= set(held) <= {r[0] for r in tasks}, "a chunk with rows is in no part of the manifest"
    visible = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))  # partition folders too
    assert visible == sorted(names), "a chunk file outside the manifest is visible"
    return [str(out / n) for n in names]


def planned_export(source_type: str, url: str, export_yaml: str, tmp_path: Path) -> dict:
    """The first export of ``rivet plan`` for a config of one source and one export (its YAML
    lines under ``- name: q``): chunks, planning statements and all."""
    config = tmp_path / "plan-rivet.yaml"
    config.write_text(f'source:\n  type: {source_type}\n  url: "{url}"\nexports:\n  - name: q\n{export_yaml}')
    plan = tmp_path / "plan.json"
    planned = run_rivet("plan", "-c", str(config), "-o", str(plan))
    assert planned.returncode == 0, planned.stderr
    return json.loads(plan.read_text())["exports"][0]


def slow_mysql_chunked_export(table: str, columns: str = "id, h", extra: str = "") -> str:
    """:func:`slow_chunked_export` of a MariaDB ``table``."""
    return slow_chunked_export(table, "SLEEP(0.0002)", columns, extra)


def slow_chunked_export(table: str, slowly: str, columns: str = "id, h", extra: str = "") -> str:
    """The YAML of an export ``slow`` of ``table`` whose chunks take long enough to be killed mid-run (each
    row outputs ``slowly``, an expression that sleeps), with parts of about two chunks (some published
    before a kill, one not)."""
    return (
        f'- name: slow\n  query: "SELECT {columns}, {slowly} AS s FROM {table}"\n  mode: chunked\n'
        "  chunk_column: id\n  chunk_size: 500\n  chunk_checkpoint: true\n  parallel: 2\n  max_file_size: 40KB\n"
        f"  destination: out\n{extra}"
    )
