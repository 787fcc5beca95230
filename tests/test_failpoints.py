"""The fault-injection matrix: every failpoint in every mode is reached and ends as it must.

For each case: a clean run, a change at the source, a run with the failpoint armed
(``RIVET_FAILPOINTS``, read by the native reader and the Python engine), then a run
without it. The armed run must say the point fired (a case whose point is never
reached proves nothing) and end with the exit status its fault calls for: a kill is
-9, an injected error 1, a corrupt value 3 (a data error, never retried), a dropped
socket 0 (retried, with output equal to the source). A failed run leaves the
destination consistent: a ``_SUCCESS`` present only where the output it vouches for
validates, and an incremental cursor equal to the newest row published. The run after
it always ends with output equal to the source, by glob and by manifest.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

import rivet
from rivet.output.validate import validate_destination
from rivet.storage.destinations import Destination, DestinationSpec
from tests.conftest import pg_url
from tests.outputs import assert_failpoint_ended, rows_by_glob, rows_by_manifest, run_rivet, write_config
from tests.sources import Source

pytestmark = pytest.mark.postgres

MODES = {
    "full": "",
    "incremental": "  mode: incremental\n  cursor_column: updated_at\n",
    "chunked": "  mode: chunked\n  chunk_column: id\n  chunk_size: 300\n  parallel: 2\n  chunk_checkpoint: true\n",
    "parallel": "  parallel: 2\n",
}
NATIVE_POINTS = ["reader_panic@2", "decode_error@2", "socket_closed@2"]
ENGINE_POINTS = ["after_part_write", "between_parts", "before_manifest", "before_cursor", "before_success"]
CASES = [("postgres", p, m) for p in NATIVE_POINTS for m in MODES] + [
    ("postgres", f"{p}:{action}", m) for p in ENGINE_POINTS for action in ("error", "crash") for m in MODES
]
# MySQL runs the same Python engine; its reader is what differs, so every native point and every kill.
CASES += [("mysql", p, m) for p in NATIVE_POINTS for m in MODES]
CASES += [("mysql", f"{p}:crash", m) for p in ENGINE_POINTS for m in MODES]
# The exit status of the armed run, by the fault it injects.
EXIT_BY_FAULT = {"crash": -9, "error": 1, "reader_panic": 1, "decode_error": 3, "socket_closed": 0}


def _expected_exit(point: str) -> int:
    name, _, action = point.partition(":")
    return EXIT_BY_FAULT[action or name.split("@")[0]]


def _config(tmp_path: Path, source: Source, table: str, mode: str) -> Path:
    body = (
        f"- name: fp\n  table: {table}\n{MODES[mode]}  max_file_size: 2KB\n  destination: out\n"
        "  tuning: {batch_size: 100, retry_backoff_ms: 10}\n"
    )
    return write_config(tmp_path, source.block, body)


def _change(source: Source, table: str, mode: str) -> None:
    source.insert_changes(table, 2001, 2600)
    if mode != "incremental":
        source.sql(f"DELETE FROM {table} WHERE id % 7 = 0")
        source.sql(f"UPDATE {table} SET v = 'changed' WHERE id % 11 = 0")


def _cursor(tmp_path: Path) -> dt.datetime | None:
    with sqlite3.connect(tmp_path / ".rivet_state.db") as conn:
        row = conn.execute("SELECT value FROM cursors WHERE export_name = 'fp'").fetchone()
    return dt.datetime.fromisoformat(row[0]) if row else None


def _consistent_after_failure(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "out"
    destination = Destination(DestinationSpec(str(out)))
    if (out / "_SUCCESS").exists():
        problems, _ = validate_destination(destination, "fp")
        assert problems == [], problems
    if mode == "incremental" and (out / "manifest.json").exists():
        published = max(k[0] for k in rows_by_manifest(out, ["updated_at"]))
        cursor = _cursor(tmp_path)
        assert cursor is not None
        assert cursor.replace(tzinfo=None) == published.replace(tzinfo=None)


@pytest.mark.parametrize(
    ("kind", "point", "mode"),
    [pytest.param(*c, marks=[pytest.mark.mysql] if c[0] == "mysql" else []) for c in CASES],
    ids=[f"{k}-{p}-{m}" for k, p, m in CASES],
)
def test_failpoint(request, tmp_path, kind, point, mode):
    source = Source(kind, request)
    table = source.changing_table()
    config = _config(tmp_path, source, table, mode)
    first = rivet.run(config)
    assert first.ok, first["fp"].error
    _change(source, table, mode)

    armed = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": point})
    out = tmp_path / "out"
    assert_failpoint_ended(armed, point, _expected_exit(point))
    if armed.returncode == 0:
        assert (
            rows_by_manifest(out, ["id", "v"])
            == source.rows(f"SELECT id, v FROM {table}")
            == rows_by_glob(out, "fp", ["id", "v"])
        )
    else:
        _consistent_after_failure(tmp_path, mode)

    # The next run (a resume, for a checkpointed chunked export) ends with the source, exactly.
    after = rivet.run(config, resume=mode == "chunked")
    assert after.ok, after["fp"].error
    expected = source.rows(f"SELECT id, v FROM {table}")
    assert rows_by_manifest(out, ["id", "v"]) == expected
    assert rows_by_glob(out, "fp", ["id", "v"]) == expected
    problems, _ = validate_destination(Destination(DestinationSpec(str(out))), "fp")
    assert problems == []
    assert not [p for p in out.iterdir() if p.name.startswith(".rivet-")], "a staged file was left behind"


@pytest.mark.parametrize(
    ("armed", "said"),
    [
        ("before_sucess:crash", "no failpoint 'before_sucess' (the points: after_anchor_recorded, after_anchor, "),
        ("before_success@0", "@ takes the visit that fires"),
        ("before_success:explode", "unknown action (the actions: error, crash"),
    ],
)
def test_a_misspelt_failpoint_is_refused_before_the_run(tmp_path, pg_table, armed, said):
    """A typo in RIVET_FAILPOINTS would arm nothing, and the fault test it drives would pass vacuously."""
    table = pg_table("CREATE TABLE {t} AS SELECT 1 AS id")
    config = tmp_path / "rivet.yaml"
    source = f'source:\n  type: postgres\n  url: "{pg_url()}"\n'
    config.write_text(f"{source}exports:\n  - name: fp\n    table: {table}\n    destination: out\n")
    proc = run_rivet("run", "-c", str(config), env={"RIVET_FAILPOINTS": armed})
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr
    assert not (tmp_path / "out").exists()
