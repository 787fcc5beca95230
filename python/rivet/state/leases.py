"""Leases: which run may write an export's output now."""

from __future__ import annotations

import time
from collections.abc import Callable

from rivet.errors import ExportBusyError
from rivet.state.keys import ExportKey
from rivet.state.lease import describe_holder
from rivet.state.records import KEY, Records, _args, _record
from rivet.state.rows import Lease


class LeaseRecords(Records):
    """Leases: which run may write an export's output now."""

    def take_lease(
        self, key: ExportKey, run_id: str, holder: str, ttl_s: float, gone: Callable[[str], bool]
    ) -> Lease | None:
        """Take the lease of ``key``; the previous holder's lease when it was taken over.

        Heartbeats are the state database's clock, so machines whose clocks disagree still
        agree on whether a holder is late. Raises ExportBusyError when a live holder has it.
        """
        with self._transaction() as c:
            now = float(c.execute(f"SELECT {self._db.clock}").fetchone()[0])
            rows = self._select(f"SELECT * FROM leases WHERE {KEY}", _args(key))
            previous = _record(Lease, rows[0]) if rows else None
            if previous is not None:
                if previous.heartbeat_at >= now - ttl_s and not gone(previous.holder):
                    raise ExportBusyError(
                        f"export '{key.name}' is already running: {describe_holder(previous)}; this run was refused "
                        "(run it again when that one ends, or pass --wait)"
                    )
                # A holder that died (a SIGKILL, an OOM kill) never recorded its end: its run is over now.
                c.execute(
                    "UPDATE export_runs SET status = 'interrupted', finished_at = ?, "
                    "error = 'the process ended without recording an outcome (killed); its lease was taken over' "
                    "WHERE run_id = ? AND status = 'running'",
                    (time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)), previous.run_id),
                )
            c.execute(
                "INSERT INTO leases (namespace, export_name, run_id, holder, acquired_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, export_name) DO UPDATE SET "
                "run_id = excluded.run_id, holder = excluded.holder, acquired_at = excluded.acquired_at, "
                "heartbeat_at = excluded.heartbeat_at",
                (*_args(key), run_id, holder, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), now),
            )
            return previous

    def renew_lease(self, key: ExportKey, run_id: str) -> bool:
        """Renew a held lease; False when another run holds it now."""
        with self._transaction() as c:
            cur = c.execute(
                f"UPDATE leases SET heartbeat_at = {self._db.clock} WHERE {KEY} AND run_id = ?", (*_args(key), run_id)
            )
            return int(cur.rowcount) == 1

    def holds_lease(self, key: ExportKey, run_id: str) -> bool:
        """Whether ``run_id`` holds the lease of ``key`` now (inside a publishing transaction: its fence)."""
        rows = self._select(f"SELECT 1 FROM leases WHERE {KEY} AND run_id = ?", (*_args(key), run_id))
        return bool(rows)

    def release_lease(self, key: ExportKey, run_id: str) -> None:
        """Give a lease back (a no-op if another run took it over)."""
        with self._transaction() as c:
            c.execute(f"DELETE FROM leases WHERE {KEY} AND run_id = ?", (*_args(key), run_id))

    def lease(self, key: ExportKey) -> Lease | None:
        """The lease of ``key``, if held."""
        rows = self._select(f"SELECT * FROM leases WHERE {KEY}", _args(key))
        return _record(Lease, rows[0]) if rows else None
