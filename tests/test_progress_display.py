"""What people see while a run goes: rich bars on a terminal (read off a pseudo-terminal's screen),
plain periodic lines otherwise."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path

import pexpect
import pyte
import pytest

from tests.conftest import MYSQL_URL, pg_url
from tests.outputs import run_rivet

WIDTH, HEIGHT = 140, 40


def _slow_pg_config(pg, pg_table, tmp_path: Path) -> Path:
    """Two exports whose chunks each take a tenth of a second, so the bars are seen moving."""
    table = pg_table("CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    pg.execute(f"INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series(1, 40) i")
    config = tmp_path / "rivet.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            source: {{type: postgres, url: "{pg_url()}"}}
            exports:
              - name: slow
                query: "SELECT id, v, pg_sleep(0.05)::text AS s FROM {table}"
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


def _screens(config: Path, env: dict[str, str]) -> list[str]:
    """Every screen the run drew on a pseudo-terminal, as text, until it exited."""
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
    child.close()
    assert child.exitstatus == 0, screens[-1] if screens else "no output"
    return screens


@pytest.mark.postgres
def test_a_terminal_shows_a_bar_per_export_and_one_for_the_run(pg, pg_table, tmp_path):
    config = _slow_pg_config(pg, pg_table, tmp_path)
    screens = _screens(config, {"RIVET_FAILPOINTS": "socket_closed@5"})
    bar = r"▸ slow .* (\d|[1-9]\d)% \d+/\d+ chunks, [\d,]+ rows · [\d,]+ rows/s"
    moving = [s for s in screens if re.search(bar, s)]
    assert moving, screens[-1]  # a partial bar: percent, chunks, rows, rows/s
    assert any("1 retry" in s for s in moving), "the retry shows on the bar while it runs"
    final = screens[-1]
    assert re.search(r"✓ slow .*100% 40 rows, \d+ files?, .* via native; 1 retry", final), final
    assert re.search(r"✓ second .*100% 40 rows", final), final
    assert re.search(r"all .*100% 2/2 exports · 80 rows", final), final
    assert "\x1b" not in final


@pytest.mark.postgres
def test_without_a_terminal_progress_is_plain_periodic_lines(pg, pg_table, tmp_path):
    config = _slow_pg_config(pg, pg_table, tmp_path)
    config.write_text(config.read_text().replace("{retry_backoff_ms: 10}", "{retry_backoff_ms: 10, throttle_ms: 5}"))
    ran = run_rivet("run", "-c", str(config), env={"RIVET_PROGRESS_EVERY_S": "0.2"})
    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.splitlines()
    start = lines.index("▸ slow started (chunked)")
    periodic = [line for line in lines if re.match(r"▸ slow \[chunked\]: \d+%, \d+/\d+ chunks, [\d,]+ rows", line)]
    end = next(i for i, line in enumerate(lines) if line.startswith("✓ slow: 40 rows"))
    assert periodic and start < lines.index(periodic[0]) < end
    assert "throttled 5 ms/batch" in periodic[0]
    assert "\x1b" not in ran.stderr


@pytest.mark.mysql
def test_a_single_stream_counts_rows_against_the_estimate(my_table, my_conn, tmp_path):
    from tests.test_mysql_engine import numbers

    table = my_table(
        f"CREATE TABLE {{t}} (id INT PRIMARY KEY);\nINSERT INTO {{t}} SELECT i FROM ({numbers(3000)}) AS n"
    )
    config = tmp_path / "rivet.yaml"
    config.write_text(
        f'source: {{type: mysql, url: "{MYSQL_URL}"}}\nexports:\n'
        f"  - {{name: s, query: 'SELECT id, SLEEP(0.0005) AS z FROM {table}', destination: out, "
        "tuning: {batch_size: 100}}\n"
    )
    ran = run_rivet("run", "-c", str(config), env={"RIVET_PROGRESS_EVERY_S": "0.2"})
    assert ran.returncode == 0, ran.stderr
    assert re.search(r"▸ s \[full\]: \d+%, [\d,]+ of ~[\d,]+ rows · [\d,]+ rows/s", ran.stderr), ran.stderr
