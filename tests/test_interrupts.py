"""Ctrl-C reaches Python promptly during a scan, other threads run while it waits, and a killed
process leaves nothing that looks complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import rivet
from tests.conftest import pg_url, visible_parts

pytestmark = pytest.mark.postgres

# About 1 ms of server time per row: a scan that would take minutes.
SLOW_QUERY = "SELECT i, (SELECT i FROM pg_sleep(0.001 * sign(i))) AS s FROM generate_series(1, 1000000) AS i"


def test_ctrl_c_during_a_scan_raises_keyboard_interrupt_promptly(out):
    sent = {}

    def interrupt() -> None:
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(1.0, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            rivet.export(pg_url(), query=SLOW_QUERY, destination=str(out))
        delay = time.monotonic() - sent["at"]
    finally:
        timer.cancel()
    assert delay < 1.0, f"KeyboardInterrupt took {delay:.2f}s"
    assert visible_parts(out) == []
    assert not (out / "_SUCCESS").exists()


def test_another_thread_keeps_running_while_a_scan_waits(out):
    from rivet import _native

    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    conn = {
        "url": pg_url(),
        "host": None,
        "port": None,
        "user": None,
        "password": None,
        "database": None,
        "tls_mode": None,
        "ca_file": None,
        "accept_invalid_certs": False,
        "accept_invalid_hostnames": False,
        "connect_timeout_s": 10.0,
    }
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
    reader = _native.PgSession(conn).scan(SLOW_QUERY, None, options, {}, [])
    worker = threading.Thread(target=spin)
    worker.start()
    try:
        start = time.monotonic()
        batches = 0
        while time.monotonic() - start < 1.0:
            assert reader.next_batch() is not None
            batches += 1
        reader.close()
    finally:
        stop.set()
        worker.join()
    # The scan thread spent most of that second waiting inside next_batch; the spinner
    # only counts that high if the GIL was free meanwhile.
    assert batches >= 1
    assert ticks > 1_000_000, ticks


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
    proc = subprocess.Popen([sys.executable, "-m", "rivet", "run", "-c", str(config)], stderr=subprocess.PIPE)
    # Wait until parts are being staged, then kill without warning.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if out.exists() and any(p.name.startswith(".rivet-") for p in out.iterdir()):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"the export never started staging parts: {stderr.decode()}")
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert visible_parts(out) == []
    assert not (out / "_SUCCESS").exists()
    assert not (out / "manifest.json").exists()
