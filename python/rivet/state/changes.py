"""The log positions of change-capture exports."""

from __future__ import annotations

from rivet.state.keys import ExportKey
from rivet.state.records import KEY, Records, _args, _record
from rivet.state.rows import ChangePosition

ANCHORING = "anchoring"
STREAMING = "streaming"


class ChangeRecords(Records):
    """Where each change-capture export reads next, moved only in the transaction that publishes."""

    def change_position(self, key: ExportKey) -> ChangePosition | None:
        """The stored position of ``key``, if any."""
        rows = self._select(f"SELECT * FROM change_positions WHERE {KEY}", _args(key))
        return _record(ChangePosition, rows[0]) if rows else None

    def set_change_position(
        self, key: ExportKey, phase: str, anchor: str, position: str | None, run_id: str, now: str
    ) -> None:
        """Replace the position of ``key`` (inside the publishing run's state commit, once anchored)."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO change_positions (namespace, export_name, phase, anchor, position, run_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, export_name) DO UPDATE SET "
                "phase = excluded.phase, anchor = excluded.anchor, position = excluded.position, "
                "run_id = excluded.run_id, updated_at = excluded.updated_at",
                (*_args(key), phase, anchor, position, run_id, now),
            )

    def reset_change_position(self, key: ExportKey) -> bool:
        """Forget the position of ``key``: its next run anchors (and snapshots) again.

        The columns its changes were published with go too: a stream started over is read with
        the table's columns then, and is not drift from the stream it replaces.
        """
        with self._transaction() as c:
            c.execute(f"DELETE FROM export_schemas WHERE {KEY}", _args(key))
            return int(c.execute(f"DELETE FROM change_positions WHERE {KEY}", _args(key)).rowcount) > 0
