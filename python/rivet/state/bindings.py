"""Whose state a key holds: the identity each export key is bound to."""

from __future__ import annotations

from rivet.core.runinfo import iso, utc_now
from rivet.state.keys import ExportIdentity, ExportKey
from rivet.state.records import Records


class BindingRecords(Records):
    """Whose state a key holds: the identity each export key is bound to."""

    def bind(self, key: ExportKey, identity: ExportIdentity, config: str | None = None) -> str | None:
        """Claim ``key``'s state for ``identity`` before a run reads it; a notice when state was carried to it.

        Raises StateConflictError (its commands name ``config``) when the state of this name
        was written for another export.
        """
        from rivet.state import identities

        with self._transaction() as c:
            return identities.bind(c, key, identity, iso(utc_now()), config)

    def rebind(self, key: ExportKey, identity: ExportIdentity, *, origin: str | None = None) -> str:
        """Make the state of this export's name (in ``origin``, or the one candidate) ``key``'s; what was done."""
        from rivet.state import identities

        with self._transaction() as c:
            return identities.rebind(c, key, identity, origin, iso(utc_now()))

    def namespaces_of(self, name: str) -> list[str]:
        """The namespaces that hold state of an export called ``name``."""
        from rivet.state import identities

        with self._lock:
            return identities.namespaces_of(self._db, name)

    def forget(self, key: ExportKey, identity: ExportIdentity) -> int:
        """Forget the cursor, boundaries and identity of ``key`` and of the state of its name it would clash with."""
        from rivet.state import identities

        with self._transaction() as c:
            return identities.forget(c, key, identity)
