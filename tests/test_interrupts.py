"""Ctrl-C reaches Python promptly during a scan, other threads run while it waits, and a killed
process leaves nothing that looks complete."""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

import rivet
from rivet.sources.postgres.source import PostgresSource
from tests.conftest import PG_URL, pg_url, visible_parts
from tests.outputs import start_rivet

pytestmark = pytest.mark.postgres

# Its first batch comes at once; the next one waits on the server for a quarter of an hour.
SLOW_QUERY = (
    "SELECT i, (SELECT i FROM pg_sleep(CASE WHEN i <= 1000 THEN 0 ELSE 1000 END)) AS s "
    "FROM generate_series(1, 2000) AS i"
)

# Backends waiting for the advisory lock on a bigint key (kept as classid: high 32 bits, objid: low, objsubid 1).
WAITERS = (
    "SELECT a.pid FROM pg_stat_activity AS a JOIN pg_locks AS l ON l.pid = a.pid "
    "WHERE a.wait_event_type = 'Lock' AND l.locktype = 'advisory' AND NOT l.granted "
    "AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint) = %s"
)


def staged_parts(directory: Path) -> list[Path]:
    """Parts being written, not yet committed (``.rivet-*.tmp``)."""
    if not directory.exists():
        return []
    return [p for p in directory.iterdir() if p.name.startswith(".rivet-") and p.name.endswith(".tmp")]


@pytest.mark.timeout(60)  # the scan waits on the server for minutes: a Ctrl-C that is not prompt fails by timeout
def test_ctrl_c_during_a_scan_raises_keyboard_interrupt_promptly(out):
    done = threading.Event()
    staged: list[Path] = []

    def first_batch_written() -> bool:
        # Every row before the server's long wait is in a staged part: the next batch is the one
        # that waits, so the scan is blocked in (or entering) next_batch().
        for part in staged_parts(out):
            with contextlib.suppress(FileNotFoundError):
                if part.read_bytes().endswith(b"\n1000,1000\n"):
                    staged.append(part)
                    return True
        return False

    def interrupt_once_the_scan_waits() -> None:
        deadline = time.monotonic() + 45
        while not done.is_set() and not first_batch_written() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not done.is_set():  # also without a staged part, so the test ends with a clear failure
            os.kill(os.getpid(), signal.SIGINT)

    # Ctrl-C as a user's process has it: Python's own handler (an event loop left behind by another
    # test in this process may have put its own in place, which would swallow the signal).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    helper = threading.Thread(target=interrupt_once_the_scan_waits)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            # CSV writes each batch as it comes (Parquet would buffer a row group in memory first).
            rivet.export(pg_url(), query=SLOW_QUERY, destination=str(out), format="csv", tuning={"batch_size": 1000})
    finally:
        done.set()
        helper.join()
        signal.signal(signal.SIGINT, previous)
    assert staged, "the scan never staged its first batch before the interrupt"
    assert visible_parts(out) == []
    assert not (out / "_SUCCESS").exists()


@pytest.mark.timeout(60)  # a next_batch() that holds the GIL while it waits deadlocks: fails by timeout
def test_another_thread_keeps_running_while_a_scan_waits(pg):
    """The scan blocks on an advisory lock that only another Python thread releases, and only
    once it sees the scan waiting for it: next_batch() returns only if it let that thread run."""
    from rivet import _native

    key = uuid.uuid4().int & ((1 << 62) - 1)
    conn = PostgresSource(url=pg_url()).connect_args()
    options = {
        "method": "cursor",
        "batch_rows": 200,
        "batch_bytes": 1 << 20,
        "statement_timeout_ms": 0,
        "lock_timeout_ms": 0,
        "throttle_ms": 0,
        "snapshot": None,
        "prefetch": 1,
        "reconcile": False,
    }
    scanning = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def release_once_the_scan_waits() -> None:
        try:
            if not scanning.wait(45):
                problems.append("next_batch() was never called")
                return
            with psycopg.connect(PG_URL, autocommit=True) as watcher:
                deadline = time.monotonic() + 45
                while not seen and time.monotonic() < deadline:
                    seen.extend(row[0] for row in watcher.execute(WAITERS, (key,)))
                    time.sleep(0.02)
            if not seen:
                problems.append("the scan never waited on the advisory lock")
        finally:
            pg.execute("SELECT pg_advisory_unlock(%s)", (key,))

    pg.execute("SELECT pg_advisory_lock(%s)", (key,))
    helper = threading.Thread(target=release_once_the_scan_waits)
    helper.start()
    try:
        reader = _native.PgSession(conn).scan(
            f"SELECT pg_advisory_xact_lock_shared({key})::text AS x", None, options, {}, []
        )
        scanning.set()
        batch = reader.next_batch()
        rest = reader.next_batch()
        reader.close()
    finally:
        scanning.set()
        helper.join()
    assert problems == []  # so the batch came only after the other thread saw the scan wait and let it go
    assert batch is not None and batch.num_rows == 1
    assert rest is None


def test_killed_process_leaves_no_visible_part_and_no_success(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source:
              type: postgres
              url: "{pg_url()}"
            exports:
              - name: big
                query: "SELECT i, repeat(md5(i::text), 20) AS pad FROM generate_series(1, 5000000) AS i"
                max_file_size: 1MB
                destination: {out}
            """
        )
    )
    proc = start_rivet("run", "-c", str(config), stdout=None, text=False)
    # Wait until parts are being staged, then kill without warning.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and any(p.name.startswith(".rivet-") for p in out.iterdir()):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"the export never started staging parts: {stderr.decode()}")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert visible_parts(out) == []
    assert not (out / "_SUCCESS").exists()
    assert not (out / "manifest.json").exists()
