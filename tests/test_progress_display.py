"""What people see while a run goes: rich bars on a terminal (read off a pseudo-terminal's screen),
plain periodic lines otherwise."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pyte
import pytest

from tests.conftest import MYSQL_URL, my_query, pg_url
from tests.outputs import start_rivet

WIDTH, HEIGHT = 140, 40


GATE_KEY = 4243  # the advisory lock a run waits on, halfway, until the test has seen what it looks for


@contextlib.contextmanager
def _held_halfway(pg) -> Iterator[tuple[str, Callable[[], None]]]:
    """A SQL function a query calls on each id: at id 21 it waits until the test calls ``release``.

    The run is then held mid-way for as long as the test needs to see its progress, so
    nothing depends on how fast the machine is or how often the display redraws.
    """
    name = f"rivet_gate_{os.getpid()}"
    pg.execute(
        f"CREATE OR REPLACE FUNCTION {name}(v int) RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN "
        # rivet reads with a lock_timeout (to yield to writers): the wait here is the test's own.
        "IF v = 21 THEN PERFORM set_config('lock_timeout', '0', true); "
        f"PERFORM pg_advisory_lock_shared({GATE_KEY}); PERFORM pg_advisory_unlock_shared({GATE_KEY}); "
        "END IF; RETURN v; END $$"
    )
    pg.execute(f"SELECT pg_advisory_lock({GATE_KEY})")
    released = []

    def release() -> None:
        if not released:
            pg.execute(f"SELECT pg_advisory_unlock({GATE_KEY})")
            released.append(True)

    try:
        yield name, release
    finally:
        release()
        pg.execute(f"DROP FUNCTION {name}(int)")


def _gated_pg_config(pg, pg_table, tmp_path: Path, gate: str) -> Path:
    """Two exports; the first in 20 chunks, held at its 11th until the test releases it."""
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    pg.execute(f"INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series(1, 40) i")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - name: slow
                query: "SELECT id, v, {gate}(id) AS g FROM {table}"
                mode: chunked
                chunk_column: id
                chunk_size: 2
                chunk_strategy: count
                destination: out_slow
                tuning: {{retry_backoff_ms: 10}}
              - {{name: second, table: {table}, destination: out_second}}
            """
        )
    )
    return config


def _screens(config: Path, env: dict[str, str], seen: Callable[[str], bool], then: Callable[[], None]) -> list[str]:
    """Every screen the run drew on a pseudo-terminal, as text, until it exited.

    ``then`` is called once a screen satisfies ``seen`` (or when the run ends without one).
    """
    screen = pyte.Screen(WIDTH, HEIGHT)
    stream = pyte.ByteStream(screen)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "rivet", "run", "-c", str(config)],
        dimensions=(HEIGHT, WIDTH),
        env={**os.environ, **env, "TERM": "xterm-256color", "COLUMNS": str(WIDTH)},
        timeout=120,
    )
    screens = []
    while True:
        try:
            stream.feed(child.read_nonblocking(65536, timeout=120))
        except pexpect.EOF:
            break
        screens.append("\n".join(screen.display))
        if seen(screens[-1]):
            then()
    then()
    child.close()
    assert child.exitstatus == 0, screens[-1] if screens else "no output"
    return screens


@pytest.mark.postgres
def test_a_terminal_shows_a_bar_per_export_and_one_for_the_run(pg, pg_table, tmp_path):
    bar = r"▸ slow .* (\d|[1-9]\d)% \d+/\d+ chunks, [\d,]+ rows · [\d,]+ rows/s"
    with _held_halfway(pg) as (gate, release):
        config = _gated_pg_config(pg, pg_table, tmp_path, gate)
        held: list[str] = []

        def moving_with_retry(screen: str) -> bool:
            if not held and re.search(bar, screen) and "1 retry" in screen:
                held.append(screen)
            return bool(held)

        screens = _screens(config, {"RIVET_FAILPOINTS": "socket_closed@5"}, moving_with_retry, release)
    # Seen while the run was held: a partial bar (percent, chunks, rows, rows/s) with its retry.
    assert held, screens[-1]
    final = screens[-1]
    assert re.search(r"✓ slow .*100% 40 rows, \d+ files?, .* via native; 1 retry", final), final
    assert re.search(r"✓ second .*100% 40 rows", final), final
    assert re.search(r"all .*100% 2/2 exports · 80 rows", final), final
    assert "\x1b" not in final


def _plain_lines(config: Path, periodic: re.Pattern[str], release: Callable[[], None]) -> list[str]:
    """The run's stderr lines, a plain line every 0.2 s; ``release`` once a ``periodic`` line came."""
    lines = []
    with start_rivet(
        "run", "-c", str(config), stdout=subprocess.DEVNULL, env={**os.environ, "RIVET_PROGRESS_EVERY_S": "0.2"}
    ) as child:
        assert child.stderr is not None
        for line in child.stderr:
            lines.append(line.rstrip("\n"))
            if periodic.match(lines[-1]):
                release()  # the line came while the run was held
        release()
        assert child.wait(timeout=120) == 0, "\n".join(lines)
    return lines


@pytest.mark.postgres
def test_without_a_terminal_progress_is_plain_periodic_lines(pg, pg_table, tmp_path):
    periodic = re.compile(r"▸ slow \[chunked\]: \d+%, \d+/\d+ chunks, [\d,]+ rows")
    with _held_halfway(pg) as (gate, release):
        config = _gated_pg_config(pg, pg_table, tmp_path, gate)
        config.write_text(
            config.read_text().replace("{retry_backoff_ms: 10}", "{retry_backoff_ms: 10, throttle_ms: 5}")
        )
        lines = _plain_lines(config, periodic, release)
    start = lines.index("▸ slow started (chunked)")
    first = next(i for i, line in enumerate(lines) if periodic.match(line))
    end = next(i for i, line in enumerate(lines) if line.startswith("✓ slow: 40 rows"))
    assert start < first < end
    assert "throttled 5 ms/batch" in lines[first]
    assert not any("\x1b" in line for line in lines)


@pytest.mark.mysql
def test_a_single_stream_counts_rows_against_the_estimate(my_table, my_conn, tmp_path):
    from tests.sources import numbers

    table = my_table(
        f"CREATE TABLE {{t}} (id INT PRIMARY KEY);\nINSERT INTO {{t}} SELECT i FROM ({numbers(3000)}) AS n"
    )
    lock = f"rivet_gate_{os.getpid()}"
    # Row 2900 waits for a lock the test holds: the run stays mid-way until the line is seen.
    held = f"IF(id = 2900, GET_LOCK('{lock}', 300) + RELEASE_LOCK('{lock}'), 0)"
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: mysql, url: "{MYSQL_URL}"}}\nexports:\n'
        f'  - {{name: s, query: "SELECT id, {held} AS z FROM {table}", destination: out, '
        "tuning: {batch_size: 100}}\n"
    )
    line = re.compile(r"▸ s \[full\]: \d+%, [1-9][\d,]* of ~[\d,]+ rows · [\d,]+ rows/s")
    assert my_query(my_conn, f"SELECT GET_LOCK('{lock}', 10)") == [(1,)]
    released = []

    def release() -> None:
        if not released:
            my_query(my_conn, f"SELECT RELEASE_LOCK('{lock}')")
            released.append(True)

    lines = _plain_lines(config, line, release)
    assert any(line.match(text) for text in lines), lines
