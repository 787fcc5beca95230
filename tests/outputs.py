"""Reading what an export left at its destination, the two ways downstream readers do.

A reader that globs takes every visible data file of the export; a reader that trusts
the manifest takes the parts it lists. Correct output gives both the same rows.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

Rows = collections.Counter[tuple[object, ...]]


def _rows(files: list[Path], columns: list[str]) -> Rows:
    counter: Rows = collections.Counter()
    for f in files:
        table = pq.read_table(f, columns=columns)
        counter.update(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
    return counter


def globbed_files(directory: Path, export: str) -> list[Path]:
    """The export's data files a glob would pick up (hidden staging files are not)."""
    own = re.compile(rf"^{re.escape(export)}_\d{{8}}_\d{{6}}_\d{{3}}.*\.parquet$")
    if not directory.exists():
        return []
    return sorted(p for p in directory.iterdir() if own.match(p.name))


def rows_by_glob(directory: Path, export: str, columns: list[str]) -> Rows:
    """Rows of every visible data file of ``export``."""
    return _rows(globbed_files(directory, export), columns)


def rows_by_manifest(directory: Path, columns: list[str], manifest: str = "manifest.json") -> Rows:
    """Rows of the parts the manifest lists."""
    doc = json.loads((directory / manifest).read_text())
    return _rows([directory / p["name"] for p in doc["parts"]], columns)


def write_config(
    home: Path, source: str | dict[str, Any], exports: str | list[dict[str, Any]], *, extra: str = ""
) -> Path:
    """``home/rivet.yaml``: the one way tests write a config.

    ``source``: YAML text (a flow mapping such as ``{type: postgres, url: ...}``) or a dict;
    ``exports``: the YAML list items (dedented here) or a list of dicts; ``extra``: top-level
    keys written between them.
    """
    block = json.dumps(source) if isinstance(source, dict) else source
    items = (
        "".join(f"  - {json.dumps(e)}\n" for e in exports)
        if isinstance(exports, list)
        else textwrap.indent(textwrap.dedent(exports), "  ")
    )
    path = home / "rivet.yaml"
    path.write_text(f"source: {block}\n{textwrap.dedent(extra)}exports:\n{items}")
    return path


def run_rivet(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | str | None = None
) -> subprocess.CompletedProcess[str]:
    """``rivet ARGS`` in a child process, to its end (with extra environment variables): the one way
    tests run the CLI."""
    return subprocess.run(
        [sys.executable, "-m", "rivet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def start_rivet(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    stdout: int = subprocess.PIPE,
    text: bool = True,
) -> subprocess.Popen:
    """``rivet ARGS`` started in a child process, for a test that watches or stops it (stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "rivet", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=text,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def is_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP: a failpoint's ``stop`` action), as /proc says."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def assert_failpoint_ended(proc: subprocess.CompletedProcess[str], point: str, returncode: int) -> None:
    """The failpoint armed as ``point`` (``name@n:action``) fired, and the run ended with ``returncode``."""
    name = point.partition(":")[0].partition("@")[0]
    assert f"rivet: failpoint {name} fired" in proc.stderr, f"{point} was never reached:\n{proc.stderr}"
    assert proc.returncode == returncode, proc.stderr


def run_export_json(config: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``rivet run -c CONFIG --json ARGS``: the first export's summary, with ``code`` and ``stderr``."""
    proc = run_rivet("run", "-c", str(config), "--json", *args, env=env)
    try:
        doc = json.loads(proc.stdout)["exports"][0]
    except (ValueError, KeyError, IndexError):
        doc = {}
    return {**doc, "code": proc.returncode, "stderr": proc.stderr}


def files_with_bytes(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes: equal snapshots mean nothing there changed."""
    return {p.name: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def noons_back(count: int) -> tuple[dt.date, list[dt.datetime]]:
    """Today (UTC) and noon UTC of each of the ``count`` days back from it (today first)."""
    today = dt.datetime.now(dt.timezone.utc).date()
    noon = dt.time(12, tzinfo=dt.timezone.utc)
    return today, [dt.datetime.combine(today - dt.timedelta(days=i), noon) for i in range(count)]


def assert_time_windows(url: str, table: str, out: Path, today: dt.date, count: int) -> None:
    """Three-day windows over ``table`` (``noons_back`` rows: id, at, unix_at), by the timestamp and by
    the unix column: from UTC midnight three days before the run's day, so three days back is in."""
    import rivet

    for column, kind in (("at", {}), ("unix_at", {"time_column_type": "unix"})):
        result = rivet.export(
            url,
            table=table,
            destination=str(out / column),
            mode="time_window",
            time_column=column,
            days_window=3,
            **kind,
        )
        ids = sorted(row[0] for row in _rows([Path(f) for f in result.files], ["id"]))
        assert ids == ids_in_window(result.run_id, 3, today, count) and ids[:3] == [0, 1, 2], ids


def ids_in_window(run_id: str, days: int, today: dt.date, count: int) -> list[int]:
    """Which of ``noons_back``'s rows (id i: i days back) a time window of ``days`` takes.

    The window starts at UTC midnight ``days`` days before the day the run started, which its id
    tells (``<export>_YYYYMMDDTHHMMSS.mmmZ``): a run that starts past midnight takes one day less.
    """
    started = dt.datetime.strptime(run_id.rsplit("_", 1)[1], "%Y%m%dT%H%M%S.%fZ")
    first = started.date() - dt.timedelta(days=days)
    return [i for i in range(count) if today - dt.timedelta(days=i) >= first]
