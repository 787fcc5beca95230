"""Appending runs killed from outside (SIGKILL, no warning) at random moments, again and again:
once a run finishes, every source row is in the folder exactly once, by glob and by manifest."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import pg_source
from tests.outputs import rows_by_glob, rows_by_manifest, run_export_json, start_rivet, write_config

pytestmark = pytest.mark.postgres

KILLS = 8  # runs killed per test: moments spread from start-up through reading to publishing and after
NEW_ROWS = 300  # inserted before each run, so every run has something to append
# A run starts in about half a second and reads its rows in about one (30 batches, 30 ms apart);
# the kill moments are spread over that span, each one jittered, in a random order.
SPAN_S = (0.2, 2.4)


def _config(tmp_path: Path, table: str, mode: str) -> Path:
    keys = {"incremental": "cursor_column: at", "time_window": "time_column: at\n  days_window: 1"}[mode]
    body = (
        f"- name: k\n  table: {table}\n  mode: {mode}\n  {keys}\n  destination: out\n"
        "  tuning: {batch_size: 10, throttle_ms: 30}\n"
    )
    return write_config(tmp_path, pg_source(), body)


def _insert(pg, table: str, first: int, count: int) -> None:
    """``count`` rows from id ``first``, each later than every row before it (the cursor moves on)."""
    pg.execute(
        f"INSERT INTO {table} SELECT i, clock_timestamp() - interval '1 minute' + i * interval '1 millisecond', "
        f"md5(i::text) FROM generate_series({first}, {first + count - 1}) AS i"
    )


@pytest.mark.parametrize("mode", ["incremental", "time_window"])
def test_runs_killed_at_random_moments_export_every_row_once(pg, pg_table, tmp_path, mode):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, at timestamptz NOT NULL, h text)")
    config = _config(tmp_path, table, mode)
    next_id = 1
    low, high = SPAN_S
    step = (high - low) / KILLS
    moments = [low + (k + rng.random()) * step for k in range(KILLS)]
    rng.shuffle(moments)
    outcomes = []
    for moment in moments:
        _insert(pg, table, next_id, NEW_ROWS)
        next_id += NEW_ROWS
        with start_rivet("run", "-c", str(config), stdout=subprocess.DEVNULL, cwd=tmp_path) as run:
            try:
                run.wait(timeout=moment)
            except subprocess.TimeoutExpired:
                run.send_signal(signal.SIGKILL)
            stderr = run.communicate()[1]
        # Killed, or finished before the kill came: nothing else.
        assert run.returncode in (0, -signal.SIGKILL), (seed, stderr)
        outcomes.append((round(moment, 2), run.returncode))
    assert any(code == -signal.SIGKILL for _, code in outcomes), (seed, outcomes)
    final = run_export_json(config)
    assert final["code"] == 0, (seed, outcomes, final["stderr"])
    ids = {(i,): 1 for i in range(1, next_id)}
    out = tmp_path / "out"
    assert rows_by_glob(out, "k", ["id"]) == ids, (seed, outcomes)
    assert rows_by_manifest(out, ["id"]) == ids, (seed, outcomes)
    assert (out / "_SUCCESS").exists()
