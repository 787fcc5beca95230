"""The state store: runs, files, cursors, change positions, chunk checkpoints and leases, with versioned migrations."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from rivet.core.runinfo import iso, utc_now
from rivet.errors import StateError
from rivet.state import original
from rivet.state.backends import STATE_FILE, SqliteBackend, open_backend
from rivet.state.bindings import BindingRecords
from rivet.state.changes import ChangeRecords
from rivet.state.chunks import ChunkRecords
from rivet.state.cursors import CursorRecords
from rivet.state.leases import LeaseRecords
from rivet.state.migrations import MIGRATIONS
from rivet.state.runs import RunRecords

log = logging.getLogger("rivet")

__all__ = ["STATE_FILE", "StateStore"]


class StateStore(BindingRecords, RunRecords, ChunkRecords, CursorRecords, ChangeRecords, LeaseRecords):
    """The state tables in a SQLite file (WAL mode) or a PostgreSQL database, migrated on open."""

    def __init__(self, location: str | Path) -> None:
        """``location``: a file path, or a ``postgresql://`` URL (see ``state_location``)."""
        # One connection shared by the worker threads of a run, one statement at a time.
        self._lock = threading.RLock()
        self._depth = 0
        self._db = open_backend(location)
        self.where = self._db.where
        try:
            self._migrate()
        except BaseException as e:
            self._db.close()
            if isinstance(e, self._db.errors):
                raise StateError(f"state store {self.where}: {e}") from e
            raise

    @property
    def version(self) -> int:
        """The schema version in the store."""
        return self._db.version()

    def _migrate(self) -> None:
        current = self.version
        if current > len(MIGRATIONS):
            raise StateError(
                f"state store {self.where} has schema version {current}, newer than this rivet "
                f"understands ({len(MIGRATIONS)}); upgrade rivet"
            )
        if current == len(MIGRATIONS):
            return
        db = self._db
        with self._transaction() as c:
            current = self.version  # another process may have migrated it meanwhile
            found = db.original_tables() if current == 0 else set()
            adopting = original.is_original(found)
            if adopting:
                db.set_aside(found)
            for version in range(current, len(MIGRATIONS)):
                for statement in db.ddl(MIGRATIONS[version]):
                    c.execute(statement)
            db.set_version(len(MIGRATIONS))
            if adopting:
                carried = original.carry_over(c, db.original_rows, iso(utc_now()))
                log.warning(
                    "state store %s was written by the original rivet: %s (each incremental run continues "
                    "strictly after its cursor); its own tables are kept%s",
                    self.where,
                    carried.describe(),
                    f" as {original.PREFIX}*" if isinstance(db, SqliteBackend) else "",
                )

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
