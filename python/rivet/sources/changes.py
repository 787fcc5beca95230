"""Reading tables' changes from a server's log: what both servers' change feeds offer.

A feed anchors in the log (a PostgreSQL slot; a MySQL/MariaDB binlog position), optionally
with a snapshot of its tables read at exactly that position, then hands over the changes
committed from a position to the log's end as the stream started: the log is read once,
each table's changes from its own position. Positions are text
the feed alone reads back; the run keeps them in its state store.
"""

from __future__ import annotations

import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rivet._native import BatchReader
    from rivet.config.tuning import Tuning
    from rivet.sources.base import ColumnOverrides

# The lowest replica id rivet derives; below it ids are usually hand-picked for real replicas.
DERIVED_SERVER_IDS = (1_000_000, 2**31 - 1)


@dataclass(frozen=True)
class ChangeSpec:
    """A change-capture export's anchor: its slot and publication (PostgreSQL) or replica id (MySQL)."""

    initial: str
    slot: str
    publication: str
    server_id: int
    # The original tool's position file, which rivet does not read (refused if it exists on a first run).
    checkpoint: str | None = None
    # A run that starts this many bytes behind the log's end warns (None: never).
    max_lag_bytes: int | None = None
    # Under write: merge, a run merges and commits every this many changes (None: the default).
    commit_every_rows: int | None = None

    @classmethod
    def for_export(
        cls,
        export: str,
        initial: str = "none",
        slot: str | None = None,
        publication: str | None = None,
        server_id: int | None = None,
        checkpoint: str | None = None,
        max_lag_bytes: int | None = None,
        commit_every_rows: int | None = None,
    ) -> ChangeSpec:
        """The spec of export ``export``, each name not given derived from the export's name."""
        derived = ("rivet_" + re.sub(r"[^a-z0-9_]", "_", export.lower()))[:63]
        low, high = DERIVED_SERVER_IDS
        return cls(
            initial=initial,
            slot=slot or derived,
            publication=publication or slot or derived,
            server_id=server_id or low + zlib.crc32(export.encode()) % (high - low),
            checkpoint=checkpoint,
            max_lag_bytes=max_lag_bytes,
            commit_every_rows=commit_every_rows,
        )


@dataclass
class ChangeSnapshot:
    """The feed's tables read at the position their changes start from; ``close`` ends the snapshot."""

    position: str
    # One read per table of the feed, in its order.
    reads: list[Callable[[], BatchReader]]
    close: Callable[[], None]

    def read(self) -> BatchReader:
        """The read of the feed's first (or only) table."""
        return self.reads[0]()


class ChangeFeed(ABC):
    """The changes of one or more tables from one server's log, read once."""

    # What the position is anchored in, for the state store and messages ("slot rivet_orders").
    anchor_name: str

    @abstractmethod
    def check_server(self) -> str:
        """Raise SourceError when the server does not log whole rows; what it logs, for people."""

    @abstractmethod
    def anchor(self) -> str:
        """Make the anchor (a slot) or take the log's end; the position changes start from."""

    @abstractmethod
    def anchor_with_snapshot(self, overrides: ColumnOverrides, tuning: Tuning) -> ChangeSnapshot:
        """Make the anchor and open a read of each table at exactly its position."""

    @abstractmethod
    def check(self, position: str) -> None:
        """Raise SourceError when the server no longer holds the log from ``position`` (a loud gap)."""

    @abstractmethod
    def bytes_behind(self, position: str) -> int | None:
        """How much log the server has written since ``position`` (None: it cannot say)."""

    @abstractmethod
    def check_overrides(self, overrides: ColumnOverrides) -> None:
        """Raise ConfigError for ``columns:`` overrides the log's values cannot be read with (before anything)."""

    @abstractmethod
    def changes_of(
        self, positions: list[str], tuning: Tuning, follow_column_changes: bool, overrides: ColumnOverrides
    ) -> list[BatchReader]:
        """Each table's change rows committed from its position (in the feed's order) to the log's end as of now.

        Columns are read with ``overrides`` (those :meth:`check_overrides` takes). With
        ``follow_column_changes``, changes logged before columns were added or dropped are read
        by name into the columns now (:meth:`column_changes` says how); without, such a change
        stops the read with a ``rivet-schema-drift`` error. The log is read once, from the
        earliest position; the readers end together, so they must be read at the same time
        (a thread each).
        """

    @abstractmethod
    def earliest(self, positions: list[str]) -> str:
        """The position of ``positions`` furthest behind in the log."""

    @abstractmethod
    def column_changes(self) -> list[str]:
        """How the last read took changes logged under other columns, one sentence each."""

    @abstractmethod
    def drained_to(self) -> str:
        """Where the next run starts, once the reader of :meth:`changes` is exhausted."""

    @abstractmethod
    def position_of(self, pos: int, near: str) -> str:
        """Where a read starts that reads first the transaction whose ``__pos`` is ``pos``, none before it.

        ``near`` is a position in the same log (for its files' names).
        """

    @abstractmethod
    def confirm(self, position: str) -> None:
        """Tell the server everything before ``position`` is kept (it may free that log)."""

    @abstractmethod
    def release(self) -> bool:
        """Remove what the anchor holds on the server (a slot); whether there was anything."""

    @abstractmethod
    def close(self) -> None:
        """Close the feed's connections."""
