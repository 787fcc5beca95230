"""PostgreSQL change capture: a pgoutput slot and its publication, streamed by rivet's own client.

The slot is made on a replication connection; with a snapshot it exports one, which other
connections import to read the tables exactly as of the slot's consistent point (the
replication connection stays idle until those reads are done). A run then streams
from its stored position to the WAL end as it started, and confirms the new position
to the slot only after the run's state commit holds it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rivet.errors import ConfigError, SourceConnectionError, SourceError, StateError
from rivet.sources.base import scan_options
from rivet.sources.changes import ChangeFeed, ChangeSnapshot, ChangeSpec

if TYPE_CHECKING:
    from rivet._native import BatchReader, PgReplication, PgSession
    from rivet.config.tuning import Tuning
    from rivet.sources.base import ColumnOverrides
    from rivet.sources.postgres.source import PostgresSource

# SQLSTATE of CREATE_REPLICATION_SLOT for a name in use.
DUPLICATE_OBJECT = "42710"
# SQLSTATE of a slot another connection streams: a consumer that just died holds it a moment longer.
OBJECT_IN_USE = "55006"
# A WAL position as PostgreSQL writes it; anything else read back from a state store is refused.
LSN = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")
# The WAL end now, on a primary or a standby.
WAL_NOW = "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END"
# How long a slot held by a vanished consumer is waited for.
ACTIVE_SLOT_WAIT_S = 30.0

T = TypeVar("T")


def _once_free(action: Callable[[], T]) -> T:
    """``action``, tried again while the slot is still held by a connection the server has not closed yet."""
    deadline = time.monotonic() + ACTIVE_SLOT_WAIT_S
    while True:
        try:
            return action()
        except SourceError as e:
            if e.code != OBJECT_IN_USE or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _lsn(position: str) -> int:
    """A WAL position as a number."""
    high, low = position.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class PgChangeFeed(ChangeFeed):
    """The changes of PostgreSQL tables through one pgoutput slot."""

    def __init__(self, source: PostgresSource, tables: list[tuple[str, ...]], spec: ChangeSpec, export: str) -> None:
        self.source, self.spec, self.export = source, spec, export
        self.anchor_name = f"slot {spec.slot}"
        self.args = source.connect_args()
        self.session: PgSession = source.session()  # type: ignore[assignment]
        self.tables = [self._resolve(t) for t in tables]
        self._stream: PgReplication | None = None

    def _query(self, sql: str) -> list[list[str | None]]:
        return self.session.query(sql)

    def _resolve(self, table: tuple[str, ...]) -> tuple[str, str]:
        """The table's schema and name as the server resolves them (the search path for a bare name)."""
        qualified = self.source.dialect.string(".".join(self.source.quote_identifier(p) for p in table))
        rows = self._query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.oid = {qualified}::regclass"
        )
        schema, name = rows[0]
        assert schema is not None and name is not None
        return schema, name

    def _replication(self) -> PgReplication:
        from rivet._native import PgReplication

        try:
            return PgReplication(self.args)
        except SourceConnectionError as e:
            if "startup parameter: replication" not in str(e):
                raise
            raise SourceError(
                f"export '{self.export}': mode: cdc reads the server's log over a replication connection, which the "
                f"connection pooler in the way (PgBouncer) does not carry ({e}); point this export's source at the "
                "server itself, not at the pooler"
            ) from e

    def check_server(self) -> str:
        """``wal_level`` is ``logical``, and a replication connection reaches the server (no pooler in the way)."""
        wal_level = self._query("SHOW wal_level")[0][0]
        if wal_level != "logical":
            raise SourceError(
                f"export '{self.export}': mode: cdc needs wal_level = logical on the server (it is {wal_level}): set "
                "it in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart the server"
            )
        self._replication()
        return "wal_level is logical; a replication connection reaches the server"

    def _publish_tables(self) -> None:
        """Make the publication for the tables when missing; refuse one that does not carry them all.

        A publication rivet made for this export (its comment says so) is given the tables it
        lacks: a table that joined ``tables:``. Anyone else's is never changed.
        """
        self.check_server()
        s = self.source.dialect.string
        pub = self.spec.publication
        quoted_pub = self.source.quote_identifier(pub)
        exists = self._query(
            f"SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = {s(pub)}"
        )
        if exists:
            carried = {
                (str(schema), str(name))
                for schema, name in self._query(
                    f"SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = {s(pub)}"
                )
            }
            missing = [t for t in self.tables if t not in carried]
            if missing and exists[0][0] == self._made_for:
                self._query(f"ALTER PUBLICATION {quoted_pub} ADD TABLE {', '.join(map(self._quoted, missing))}")
            elif missing:
                raise SourceError(
                    f"export '{self.export}': publication {pub} exists but does not publish "
                    f"{', '.join(self._shown(t) for t in missing)}; add it (ALTER PUBLICATION {quoted_pub} ADD TABLE "
                    f"{', '.join(self._quoted(t) for t in missing)}) or set cdc.publication"
                )
            return
        listed = ", ".join(self._quoted(t) for t in self.tables)
        # Made and marked as rivet's in one transaction: a publication without the mark is someone else's.
        self._query("BEGIN")
        try:
            self._query(f"CREATE PUBLICATION {quoted_pub} FOR TABLE {listed}")
            self._query(f"COMMENT ON PUBLICATION {quoted_pub} IS {s(self._made_for)}")
            self._query("COMMIT")
        except SourceError as e:
            with contextlib.suppress(SourceError):
                self._query("ROLLBACK")
            raise SourceError(
                f"export '{self.export}': cannot create publication {pub} for "
                f"{', '.join(self._shown(t) for t in self.tables)} ({e}); have the tables' owner run CREATE "
                f"PUBLICATION {quoted_pub} FOR TABLE {listed}, or name one in cdc.publication",
                code=e.code,
            ) from e

    @property
    def _made_for(self) -> str:
        """The comment of a publication rivet made for this export."""
        return f"made by rivet for export {self.export}"

    def _quoted(self, table: tuple[str, str]) -> str:
        return ".".join(self.source.quote_identifier(part) for part in table)

    @staticmethod
    def _shown(table: tuple[str, str]) -> str:
        return ".".join(table)

    def _create_slot(self, replication: PgReplication, export_snapshot: bool) -> dict[str, Any]:
        try:
            return replication.create_slot(self.spec.slot, export_snapshot)
        except SourceError as e:
            if e.code != DUPLICATE_OBJECT:
                raise
            raise SourceError(
                f"export '{self.export}': replication slot {self.spec.slot} already exists, but this export has no "
                f"position for it in the state store (it was reset, or the slot is another consumer's): drop it with "
                f"`rivet cdc drop -e {self.export}` to start over, or name another slot in cdc.slot",
                code=e.code,
            ) from e

    def anchor(self) -> str:
        """Make the slot; its consistent point is where the changes start."""
        self._publish_tables()
        replication = self._replication()
        created = self._create_slot(replication, False)
        return str(created["consistent_point"])

    def anchor_with_snapshot(self, overrides: ColumnOverrides, tuning: Tuning) -> ChangeSnapshot:
        """Make the slot exporting its snapshot; each table is read in that snapshot on another connection."""
        self._publish_tables()
        holder = [self._replication()]
        created = self._create_slot(holder[0], True)
        decimal, text = self.source.split_overrides(overrides)
        options = {**scan_options(tuning, method=self.source.read_method), "snapshot": created["snapshot"]}

        def reader_of(table: tuple[str, str]) -> Callable[[], BatchReader]:
            query = f"SELECT * FROM {self._quoted(table)}"
            return lambda: self.source.session().scan(query, None, options, decimal, text)

        reads = [reader_of(t) for t in self.tables]
        return ChangeSnapshot(str(created["consistent_point"]), reads, holder.clear)

    def check(self, position: str) -> None:
        """The position is a WAL position; the slot is there, for pgoutput in this database, holding its WAL."""
        if not LSN.match(position):
            raise StateError(
                f"export '{self.export}': its stored position {position!r} is not a PostgreSQL WAL position; the "
                f"state store is not trusted with it (was it edited?): `rivet state reset -e {self.export}` starts over"
            )
        s = self.source.dialect.string
        rows = self._query(
            "SELECT plugin::text, (database = current_database())::text, wal_status FROM pg_replication_slots "
            f"WHERE slot_name = {s(self.spec.slot)}"
        )
        gap = (
            f"the changes after {position} cannot be read: reset the export (`rivet state reset -e {self.export}`) "
            "and run it with cdc.initial: snapshot to start again from a new snapshot"
        )
        if not rows:
            raise SourceError(f"export '{self.export}': replication slot {self.spec.slot} is gone; {gap}")
        plugin, here, wal_status = rows[0]
        if plugin != "pgoutput" or here != "true":
            raise SourceError(
                f"export '{self.export}': replication slot {self.spec.slot} is not a pgoutput slot of this database "
                "(another consumer's?): name this export's own slot in cdc.slot"
            )
        if wal_status == "lost":
            raise SourceError(
                f"export '{self.export}': replication slot {self.spec.slot} lost the WAL it held "
                f"(max_slot_wal_keep_size); {gap}"
            )

    def bytes_behind(self, position: str) -> int | None:
        """The WAL written since ``position``."""
        lsn = self.source.dialect.string(position)
        behind = self._query(f"SELECT pg_wal_lsn_diff({WAL_NOW}, {lsn}::pg_lsn)::bigint::text")[0][0]
        return int(behind) if behind is not None else None

    def check_overrides(self, overrides: ColumnOverrides) -> None:
        """decimal(p,s) only: pgoutput sends each value in its type's binary form, which a text override cannot read."""
        if overrides.other:
            column = next(iter(overrides.other))
            raise ConfigError(
                f"export '{self.export}': columns: {{{column}: {overrides.other[column]}}} cannot be applied to "
                "change capture, whose log carries each value in its column's own binary form; give a numeric "
                "without precision decimal(p,s), or leave such a column out of the captured table"
            )

    def changes_of(
        self, positions: list[str], tuning: Tuning, follow_column_changes: bool, overrides: ColumnOverrides
    ) -> list[BatchReader]:
        """Stream the slot from the earliest of ``positions`` to the WAL end as of now."""
        self._stream = replication = self._replication()
        until = str(replication.identify_system()["wal_position"])
        start = self.earliest(positions)
        _once_free(lambda: replication.start(self.spec.slot, start, [self.spec.publication], True))
        options = scan_options(tuning, method=self.source.read_method)
        tables = [(schema, name, at) for (schema, name), at in zip(self.tables, positions, strict=True)]
        return replication.stream_changes(until, self.args, tables, options, follow_column_changes, overrides.decimal)

    def earliest(self, positions: list[str]) -> str:
        """The lowest WAL position."""
        return min(positions, key=_lsn)

    def column_changes(self) -> list[str]:
        """What the last stream said of changes logged under other columns."""
        return self._stream.column_changes if self._stream is not None else []

    def drained_to(self) -> str:
        """The end of what the stream handed over, or the WAL end it drained to."""
        assert self._stream is not None and self._stream.drained_to is not None, "the change stream did not end"
        return self._stream.drained_to

    def position_of(self, pos: int, near: str) -> str:
        """The transaction's commit LSN: a stream from there skips every commit before it."""
        return f"{pos >> 32:X}/{pos & 0xFFFFFFFF:X}"

    def confirm(self, position: str) -> None:
        """Move the slot: the server may recycle the WAL before ``position``."""
        assert self._stream is not None
        self._stream.confirm(position, False)
        self._stream.stop()

    def release(self) -> bool:
        """Drop the slot, when there is one."""
        s = self.source.dialect.string
        if not self._query(f"SELECT 1 FROM pg_replication_slots WHERE slot_name = {s(self.spec.slot)}"):
            return False
        replication = self._replication()
        _once_free(lambda: replication.drop_slot(self.spec.slot))
        return True

    def close(self) -> None:
        """Forget the stream (its connection closes)."""
        self._stream = None
