"""Taking over the original rivet tool's state, the first time rivet opens it.

That is its ``.rivet_state.db`` (v0.5.x and later) or its PostgreSQL state. Carried
over: incremental cursors, the run history (``rivet metrics``), the file records
(``rivet state files``) and the chunk runs (``rivet state chunks``). The original reads
strictly after its cursor (``>``), so a carried cursor does too: the rows at the cursor
value were exported already. Its chunk runs are history: their chunks are key ranges
of the original's plan, which this rivet does not resume (an unfinished one is closed
as ``original``). The original's tables themselves are kept: renamed
``original_<name>`` in a SQLite file (some names are rivet's own), untouched in
PostgreSQL (rivet's tables live in their own schema). Tables differ between the
original's versions, so every column is read if it is there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The original's tables, from its first schema to its latest (file_manifest became file_log).
ORIGINAL_TABLES = (
    "export_state",
    "export_metrics",
    "export_schema",
    "file_manifest",
    "file_log",
    "chunk_run",
    "chunk_task",
    "export_progression",
    "run_aggregate",
    "export_shape",
    "run_journal",
    "schema_version",
)
PREFIX = "original_"
# The run that carried cursors and records belong to, when the original named none.
RUN_ID = "original-rivet"
# The status of a carried chunk run the original left unfinished: closed, not resumable.
CLOSED = "original"

Rows = Callable[[str], list[dict[str, Any]]]  # the rows of one of the original's tables ([] if absent)


def is_original(tables: set[str]) -> bool:
    """Whether a state rivet has never opened holds the original tool's tables."""
    return "export_state" in tables or "schema_version" in tables


@dataclass
class Carried:
    """How much of the original's state was taken over."""

    cursors: int = 0
    runs: int = 0
    files: int = 0
    chunk_runs: int = 0

    def describe(self) -> str:
        """For the one-line notice."""
        return (
            f"{self.cursors} incremental cursor(s), {self.runs} run(s), {self.files} file record(s) and "
            f"{self.chunk_runs} chunk run(s) carried over"
        )


def carry_over(tx: Any, rows_of: Rows, now: str) -> Carried:
    """Copy the original's state into rivet's tables (inside the migrating transaction)."""
    carried = Carried()
    carried.cursors = _cursors(tx, rows_of("export_state"), now)
    files = rows_of("file_log") or rows_of("file_manifest")
    carried.runs = _runs(tx, rows_of("export_metrics"), files, now)
    carried.files = _files(tx, files, now)
    carried.chunk_runs = _chunk_runs(tx, rows_of("chunk_run"), rows_of("chunk_task"), now)
    return carried


def _cursors(tx: Any, rows: list[dict[str, Any]], now: str) -> int:
    count = 0
    for row in rows:
        value = row.get("last_cursor_value")
        if value is None or value == "":
            continue
        at = str(row.get("last_run_at") or now)
        # The SQL literal is rebuilt from the typed value when a run opens the cursor: never stored SQL.
        tx.execute(
            "INSERT INTO cursors (export_name, value, sql_literal, run_id, updated_at) VALUES (?, ?, '', ?, ?)",
            (row["export_name"], str(value), RUN_ID, at),
        )
        tx.execute(
            "INSERT INTO boundaries (export_name, scope, value, sql_literal, strict, run_id, updated_at) "
            "VALUES (?, 'cursor', ?, '', 1, ?, ?)",
            (row["export_name"], str(value), RUN_ID, at),
        )
        count += 1
    return count


def _run_id(row: dict[str, Any], fallback: str) -> str:
    return str(row.get("run_id") or fallback)


def _runs(tx: Any, metrics: list[dict[str, Any]], files: list[dict[str, Any]], now: str) -> int:
    """The original's run metrics as runs; a run its file records name but its metrics lack, too."""
    seen: set[str] = set()
    for row in metrics:
        run_id = _run_id(row, f"{RUN_ID}-{row.get('id')}")
        if run_id in seen:
            continue
        seen.add(run_id)
        at = str(row.get("run_at") or now)
        status = str(row.get("status") or "unknown")
        tx.execute(
            "INSERT INTO export_runs (run_id, export_name, mode, status, started_at, finished_at, rows, files, "
            "bytes, duration_ms, peak_rss_mb, engine, error, published_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'original', ?, ?)",
            (
                run_id,
                str(row.get("export_name") or ""),
                str(row.get("mode") or "unknown"),
                status,
                at,
                at,
                int(row.get("total_rows") or 0),
                int(row.get("files_produced") or 0),
                int(row.get("bytes_written") or 0),
                row.get("duration_ms"),
                row.get("peak_rss_mb"),
                row.get("error_message"),
                at if status == "success" else None,
            ),
        )
    for row in files:
        run_id = _run_id(row, RUN_ID)
        if run_id in seen:
            continue
        seen.add(run_id)
        at = str(row.get("created_at") or now)
        tx.execute(
            "INSERT INTO export_runs (run_id, export_name, mode, status, started_at, finished_at, engine, "
            "published_at) VALUES (?, ?, 'unknown', 'success', ?, ?, 'original', ?)",
            (run_id, str(row.get("export_name") or ""), at, at, at),
        )
    return len(seen)


def _files(tx: Any, rows: list[dict[str, Any]], now: str) -> int:
    for row in rows:
        tx.execute(
            "INSERT INTO file_log (run_id, export_name, url, rows, bytes, sha256, created_at) "
            "VALUES (?, ?, ?, ?, ?, '', ?)",
            (
                _run_id(row, RUN_ID),
                str(row.get("export_name") or ""),
                str(row.get("file_name") or ""),
                int(row.get("row_count") or 0),
                int(row.get("bytes") or 0),
                str(row.get("created_at") or now),
            ),
        )
    return len(rows)


TASK_STATUS = {"completed": "done"}  # the original's word for a chunk whose file is written


def _chunk_runs(tx: Any, runs: list[dict[str, Any]], tasks: list[dict[str, Any]], now: str) -> int:
    carried = set()
    for run in runs:
        started = str(run.get("created_at") or run.get("updated_at") or now)
        status = "completed" if run.get("status") == "completed" else CLOSED
        tx.execute(
            "INSERT INTO chunk_runs (run_id, export_name, fingerprint, part_stem, status, started_at, updated_at) "
            "VALUES (?, ?, ?, '', ?, ?, ?)",
            (
                run["run_id"],
                run["export_name"],
                str(run.get("plan_hash") or ""),
                status,
                started,
                str(run.get("updated_at") or started),
            ),
        )
        carried.add(run["run_id"])
    for task in tasks:
        if task.get("run_id") not in carried:
            continue
        status = str(task.get("status") or "pending")
        tx.execute(
            "INSERT INTO chunk_tasks (run_id, chunk_index, query, label, status, attempts, rows, last_error, "
            "updated_at) VALUES (?, ?, '', ?, ?, ?, ?, ?, ?)",
            (
                task["run_id"],
                int(task["chunk_index"]),
                f"[{task.get('start_key')}..{task.get('end_key')}]",
                TASK_STATUS.get(status, status),
                int(task.get("attempts") or 0),
                task.get("rows_written"),
                task.get("last_error"),
                str(task.get("updated_at") or now),
            ),
        )
    return len(carried)
