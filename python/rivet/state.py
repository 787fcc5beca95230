"""The state store: run metrics and the file log in SQLite, with versioned migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rivet.errors import StateError

STATE_FILE = ".rivet_state.db"

# Each entry moves the schema one version forward; never edit a released step.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE export_runs (
        run_id       TEXT PRIMARY KEY,
        export_name  TEXT NOT NULL,
        mode         TEXT NOT NULL,
        status       TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        rows         INTEGER NOT NULL DEFAULT 0,
        files        INTEGER NOT NULL DEFAULT 0,
        bytes        INTEGER NOT NULL DEFAULT 0,
        duration_ms  INTEGER,
        peak_rss_mb  REAL,
        engine       TEXT,
        fingerprint  TEXT,
        error        TEXT
    );
    CREATE INDEX export_runs_by_export ON export_runs (export_name, started_at);
    CREATE TABLE file_log (
        id           INTEGER PRIMARY KEY,
        run_id       TEXT NOT NULL REFERENCES export_runs (run_id),
        export_name  TEXT NOT NULL,
        url          TEXT NOT NULL,
        rows         INTEGER NOT NULL,
        bytes        INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE INDEX file_log_by_export ON file_log (export_name, created_at);
    """,
]


class StateStore:
    """A SQLite file (WAL mode) beside the config, migrated on open."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StateError(f"state store {self.path}: {e}") from e

    @property
    def version(self) -> int:
        """The schema version in the file."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.version
        if current > len(MIGRATIONS):
            raise StateError(
                f"state store {self.path} has schema version {current}, newer than this rivet "
                f"understands ({len(MIGRATIONS)}); upgrade rivet"
            )
        for version in range(current, len(MIGRATIONS)):
            with self._transaction() as c:
                c.executescript_in_tx(MIGRATIONS[version])
                c.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield _Tx(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the file."""
        self._conn.close()

    def run_started(self, run_id: str, export: str, mode: str, started_at: str, fingerprint: str) -> None:
        """Record that a run began."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO export_runs (run_id, export_name, mode, status, started_at, fingerprint) "
                "VALUES (?, ?, ?, 'running', ?, ?)",
                (run_id, export, mode, started_at, fingerprint),
            )

    def run_finished(
        self,
        run_id: str,
        *,
        status: str,
        finished_at: str,
        rows: int,
        files: int,
        nbytes: int,
        duration_ms: int,
        peak_rss_mb: float,
        engine: str,
        error: str | None,
    ) -> None:
        """Record a run's outcome and metrics."""
        with self._transaction() as c:
            c.execute(
                "UPDATE export_runs SET status=?, finished_at=?, rows=?, files=?, bytes=?, duration_ms=?, "
                "peak_rss_mb=?, engine=?, error=? WHERE run_id=?",
                (status, finished_at, rows, files, nbytes, duration_ms, peak_rss_mb, engine, error, run_id),
            )

    def log_files(self, run_id: str, export: str, files: list[tuple[str, int, int, str]], created_at: str) -> None:
        """Record committed parts: (url, rows, bytes, sha256)."""
        with self._transaction() as c:
            c.executemany(
                "INSERT INTO file_log (run_id, export_name, url, rows, bytes, sha256, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, export, u, r, b, h, created_at) for u, r, b, h in files],
            )

    def runs(self, export: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Recent runs, newest first."""
        sql = "SELECT * FROM export_runs"
        args: tuple[Any, ...] = ()
        if export:
            sql += " WHERE export_name = ?"
            args = (export,)
        sql += " ORDER BY started_at DESC LIMIT ?"
        cur = self._conn.execute(sql, (*args, limit))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def files(self, export: str | None = None) -> list[dict[str, Any]]:
        """The file log, oldest first."""
        sql = "SELECT * FROM file_log" + (" WHERE export_name = ?" if export else "") + " ORDER BY id"
        cur = self._conn.execute(sql, (export,) if export else ())
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


class _Tx:
    """The connection inside a transaction; ``executescript`` would commit, so split statements."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, args)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

    def executescript_in_tx(self, script: str) -> None:
        for statement in script.split(";"):
            if statement.strip():
                self._conn.execute(statement)
