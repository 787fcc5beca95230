"""Incremental cursors, and the boundary rows of appending exports."""

from __future__ import annotations

from collections.abc import Iterable

from rivet.state.keys import ExportKey
from rivet.state.records import KEY, Records, _args, _record
from rivet.state.rows import Boundary, Cursor


class CursorRecords(Records):
    """Incremental cursors, and the boundary rows of appending exports."""

    def cursor(self, key: ExportKey) -> Cursor | None:
        """The stored cursor of ``key``."""
        rows = self._select(f"SELECT * FROM cursors WHERE {KEY}", _args(key))
        return _record(Cursor, rows[0]) if rows else None

    def set_cursor(self, key: ExportKey, value: str, sql_literal: str, run_id: str, now: str) -> None:
        """Move the cursor (called only after the run's files are committed)."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO cursors (namespace, export_name, value, sql_literal, run_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, export_name) DO UPDATE SET value = excluded.value, "
                "sql_literal = excluded.sql_literal, run_id = excluded.run_id, updated_at = excluded.updated_at",
                (*_args(key), value, sql_literal, run_id, now),
            )

    def reset_cursor(self, key: ExportKey) -> bool:
        """Forget the cursor (and its boundary rows); the next run exports everything."""
        with self._transaction() as c:
            c.execute(f"DELETE FROM boundaries WHERE {KEY}", _args(key))
            c.execute(f"DELETE FROM boundary_rows WHERE {KEY}", _args(key))
            return int(c.execute(f"DELETE FROM cursors WHERE {KEY}", _args(key)).rowcount) > 0

    def boundary(self, key: ExportKey, scope: str) -> Boundary | None:
        """The last boundary of ``key`` in ``scope`` (value, sql_literal, strict), if any."""
        rows = self._select(f"SELECT * FROM boundaries WHERE {KEY} AND scope = ?", (*_args(key), scope))
        return _record(Boundary, {**rows[0], "strict": bool(rows[0]["strict"])}) if rows else None

    def boundary_hashes(self, key: ExportKey, scope: str) -> list[int]:
        """The hashes of the rows already exported at the boundary."""
        rows = self._select(f"SELECT row_hash FROM boundary_rows WHERE {KEY} AND scope = ?", (*_args(key), scope))
        return [r["row_hash"] for r in rows]

    def set_boundary(
        self,
        key: ExportKey,
        scope: str,
        value: str,
        sql_literal: str,
        hashes: Iterable[int] | None,
        run_id: str,
        now: str,
    ) -> None:
        """Replace the boundary of ``key`` in ``scope``; ``hashes`` None makes the next run strict (``>``)."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO boundaries (namespace, export_name, scope, value, sql_literal, strict, run_id, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, export_name, scope) DO UPDATE SET "
                "value = excluded.value, sql_literal = excluded.sql_literal, strict = excluded.strict, "
                "run_id = excluded.run_id, updated_at = excluded.updated_at",
                (*_args(key), scope, value, sql_literal, int(hashes is None), run_id, now),
            )
            c.execute(f"DELETE FROM boundary_rows WHERE {KEY} AND scope = ?", (*_args(key), scope))
            if hashes is not None:
                c.executemany(
                    "INSERT INTO boundary_rows (namespace, export_name, scope, row_hash) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [(*_args(key), scope, h) for h in hashes],
                )

    def reset_boundaries(self, key: ExportKey) -> None:
        """Forget every boundary of ``key``."""
        with self._transaction() as c:
            c.execute(f"DELETE FROM boundaries WHERE {KEY}", _args(key))
            c.execute(f"DELETE FROM boundary_rows WHERE {KEY}", _args(key))
