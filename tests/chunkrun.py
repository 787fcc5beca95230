"""Helpers of the chunked-engine tests: rows read back from files, and a run killed then resumed."""

from __future__ import annotations

import collections
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq


def rows_in_files(files: list[str], columns: list[str]) -> collections.Counter[tuple[object, ...]]:
    """Every row of ``columns`` in the Parquet ``files``, counted."""
    counter: collections.Counter[tuple[object, ...]] = collections.Counter()
    for f in files:
        table = pq.read_table(f, columns=columns)
        counter.update(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    return counter


def _done_chunks(state: Path) -> int:
    if not state.exists():
        return 0
    with sqlite3.connect(state) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM chunk_tasks WHERE status = 'done'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def kill_after_chunks(config: Path, done: int) -> dict[int, str]:
    """Run ``config``, SIGKILL it once ``done`` chunks are checkpointed; the done chunks and their parts."""
    state = config.parent / ".rivet_state.db"
    proc = subprocess.Popen([sys.executable, "-m", "rivet", "run", "-c", str(config)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _done_chunks(state) < done and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    with sqlite3.connect(state) as conn:
        return dict(conn.execute("SELECT chunk_index, parts FROM chunk_tasks WHERE status = 'done'").fetchall())


def resume_and_check(config: Path, before: dict[int, str]) -> list[str]:
    """``rivet run --resume``; assert no chunk done before was read again and each chunk was committed
    once, with nothing visible outside the manifest. The files of the manifest."""
    resumed = subprocess.run(
        [sys.executable, "-m", "rivet", "run", "-c", str(config), "--resume", "--json"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(config.parent / ".rivet_state.db") as conn:
        tasks = conn.execute("SELECT chunk_index, status, attempts, parts FROM chunk_tasks").fetchall()
    for index, parts in before.items():
        row = next(r for r in tasks if r[0] == index)
        assert row[3] == parts and row[2] == 1, "a chunk done before the kill was read again"
    assert all(status == "done" for _, status, _, _ in tasks)
    out = config.parent / "out"
    names = [p["name"] for p in json.loads((out / "manifest.json").read_text())["parts"]]
    chunk_ids = [n.split("_chunk")[1][:5] for n in names]
    assert len(chunk_ids) == len(set(chunk_ids)), "a chunk was committed twice"
    visible = sorted(p.name for p in out.iterdir() if p.suffix == ".parquet")
    assert visible == sorted(names), "a chunk file outside the manifest is visible"
    return [str(out / n) for n in names]
