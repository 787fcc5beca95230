"""Taking over the state file of the original rivet tool (``.rivet_state.db``, v0.5.x and later).

Its tables are kept, renamed ``original_<name>`` (some names are rivet's own), and
its incremental cursors carried over. The original reads strictly after its cursor
(``>``), so a carried cursor does too: the rows at the cursor value were exported
already. Chunk runs and file records of the original are kept, not resumed.
"""

from __future__ import annotations

import sqlite3
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
# Which run a carried cursor belongs to, in rivet's tables.
RUN_ID = "original-rivet"


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def is_original(conn: sqlite3.Connection) -> bool:
    """Whether a file rivet has never opened holds the original tool's state."""
    tables = _tables(conn)
    return "export_state" in tables or "schema_version" in tables


def set_aside(tx: Any, conn: sqlite3.Connection) -> None:
    """Rename the original's tables so rivet's own can be created beside them."""
    for table in sorted(_tables(conn) & set(ORIGINAL_TABLES)):
        tx.execute(f'ALTER TABLE "{table}" RENAME TO "{PREFIX}{table}"')


def carry_cursors(tx: Any, conn: sqlite3.Connection, now: str) -> int:
    """Copy the original's incremental cursors as strict boundaries; how many."""
    if f"{PREFIX}export_state" not in _tables(conn):
        return 0
    rows = conn.execute(
        f"SELECT export_name, last_cursor_value, last_run_at FROM {PREFIX}export_state "
        "WHERE last_cursor_value IS NOT NULL AND last_cursor_value <> ''"
    ).fetchall()
    for export, value, last_run in rows:
        at = str(last_run or now)
        # The SQL literal is rebuilt from the typed value when a run opens the cursor: never stored SQL.
        tx.execute(
            "INSERT INTO cursors (export_name, value, sql_literal, run_id, updated_at) VALUES (?, ?, '', ?, ?)",
            (export, str(value), RUN_ID, at),
        )
        tx.execute(
            "INSERT INTO boundaries (export_name, scope, value, sql_literal, strict, run_id, updated_at) "
            "VALUES (?, 'cursor', ?, '', 1, ?, ?)",
            (export, str(value), RUN_ID, at),
        )
    return len(rows)
