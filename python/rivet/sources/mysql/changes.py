"""MySQL/MariaDB change capture: the binary log, read as a replica with the export's server id.

A position is ``file:offset`` in the log. The server keeps nothing for a reader, so
anchoring is taking the log's end, and the log a position needs is there until the
server purges it (``binlog_expire_logs_seconds``): a purged file is a loud error. A
snapshot is read in a ``WITH CONSISTENT SNAPSHOT`` transaction whose log position
MariaDB reports exactly (``binlog_snapshot_file``/``_position``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from rivet.errors import ConfigError, SourceError, StateError
from rivet.sources.base import scan_options
from rivet.sources.changes import ChangeFeed, ChangeSnapshot, ChangeSpec

if TYPE_CHECKING:
    from rivet._native import BatchReader, MyBinlog, MySession
    from rivet.config.tuning import Tuning
    from rivet.sources.base import ColumnOverrides
    from rivet.sources.mysql.source import MysqlSource


# A binary log position as rivet writes it: the file's name, then the offset in it.
POSITION = re.compile(r"^([A-Za-z0-9_.-]{1,255}):([0-9]{1,10})$")


def _split(position: str) -> tuple[str, int]:
    matched = POSITION.match(position)
    if matched is None:
        raise StateError(
            f"the stored position {position!r} is not a binary log position (file:offset); the state store is not "
            "trusted with it (was it edited?): `rivet state reset` starts the export over"
        )
    return matched.group(1), int(matched.group(2))


class MyChangeFeed(ChangeFeed):
    """The changes of MySQL/MariaDB tables through one read of the binary log."""

    def __init__(self, source: MysqlSource, tables: list[tuple[str, ...]], spec: ChangeSpec, export: str) -> None:
        self.source, self.spec, self.export = source, spec, export
        self.anchor_name = f"server_id {spec.server_id}"
        self.args = source.connect_args()
        self.session: MySession = source.session()  # type: ignore[assignment]
        self.tables = [self._qualified(t) for t in tables]
        self._stream: MyBinlog | None = None

    def _qualified(self, table: tuple[str, ...]) -> tuple[str, str]:
        """``(database, name)`` of ``table``, in the connection's database when it names none."""
        if len(table) == 2:
            return table[0], table[1]
        database = self.session.query("SELECT DATABASE()")[0][0]
        if database is None:
            raise ConfigError(f"export '{self.export}': table {table[-1]} needs a database: write table: db.name")
        return str(database), table[-1]

    def _binlog(self) -> MyBinlog:
        from rivet._native import MyBinlog

        self.check_server()
        return MyBinlog(self.args)

    def check_server(self) -> str:
        """A log of whole rows: a statement logged as SQL, or a row logged in part, would be a change lost."""
        row = self.session.query("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image")[0]
        log_bin, binlog_format, row_image = (str(v).upper() for v in row)
        wrong = []
        if log_bin not in ("1", "ON"):
            wrong.append("log_bin is off")
        if binlog_format != "ROW":
            wrong.append(f"binlog_format is {binlog_format}, not ROW")
        if row_image != "FULL":
            wrong.append(f"binlog_row_image is {row_image}, not FULL")
        if wrong:
            raise SourceError(
                f"export '{self.export}': mode: cdc needs the server to log whole rows, and {', '.join(wrong)}: "
                "set log_bin, binlog_format = ROW and binlog_row_image = FULL in the server's configuration"
            )
        return "the binary log is on, in ROW format with FULL row images"

    def anchor(self) -> str:
        """The log's end: the changes start there."""
        file, offset = self._binlog().end()
        return f"{file}:{offset}"

    def anchor_with_snapshot(self, overrides: ColumnOverrides, tuning: Tuning) -> ChangeSnapshot:
        """A consistent-snapshot transaction and the log position it sees."""
        self.check_server()
        session = self.source.session()
        session.query("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        status = dict(
            (str(name).lower(), value) for name, value in session.query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        )
        file, offset = status.get("binlog_snapshot_file"), status.get("binlog_snapshot_position")
        if not file or offset is None:
            session.query("ROLLBACK")
            raise SourceError(
                f"export '{self.export}': cdc.initial: snapshot needs the log position of a consistent snapshot, "
                "which MariaDB reports and MySQL does not: export the table with mode: full and set "
                "cdc.initial: none (the changes start at the first run)"
            )
        decimal, text = self.source.split_overrides(overrides)
        options = scan_options(tuning, method=self.source.read_method)

        def reader_of(table: tuple[str, str]) -> Callable[[], BatchReader]:
            query = f"SELECT * FROM {'.'.join(self.source.quote_identifier(p) for p in table)}"
            return lambda: session.scan(query, None, options, decimal, text)

        def close() -> None:
            session.query("COMMIT")

        return ChangeSnapshot(f"{file}:{offset}", [reader_of(t) for t in self.tables], close)

    def check(self, position: str) -> None:
        """The log file the position is in is still on the server."""
        file, _ = _split(position)
        files = {str(row[0]) for row in self.session.query("SHOW BINARY LOGS")}
        if file not in files:
            raise SourceError(
                f"export '{self.export}': the binary log {file} holding its position {position} was purged "
                f"(binlog_expire_logs_seconds); the changes since cannot be read: reset the export "
                f"(`rivet state reset -e {self.export}`) and run it with cdc.initial: snapshot"
            )

    def bytes_behind(self, position: str) -> int | None:
        """The binary log written since ``position``: the rest of its file and every later file."""
        file, offset = _split(position)
        sizes = [(str(r[0]), int(str(r[1]))) for r in self.session.query("SHOW BINARY LOGS")]
        names = [name for name, _ in sizes]
        if file not in names:
            return None
        later = sizes[names.index(file) :]
        return max(sum(size for _, size in later) - offset, 0)

    def check_overrides(self, overrides: ColumnOverrides) -> None:
        """None: the binary log carries each value in its column's own type, which rivet maps exactly."""
        if overrides.decimal or overrides.other:
            column = next(iter({**overrides.decimal, **overrides.other}))
            raise ConfigError(
                f"export '{self.export}': columns: {column} cannot be applied to change capture, whose binary "
                "log carries each value in its column's own type (mapped exactly without one); remove the override"
            )

    def changes_of(
        self, positions: list[str], tuning: Tuning, follow_column_changes: bool, overrides: ColumnOverrides
    ) -> list[BatchReader]:
        """The binlog from the earliest of ``positions`` to its end, as the server's replica ``server_id``."""
        tables = [(schema, name, *_split(at)) for (schema, name), at in zip(self.tables, positions, strict=True)]
        self._stream = binlog = self._binlog()
        options = scan_options(tuning, method=self.source.read_method)
        return binlog.stream_changes(tables, self.spec.server_id, self.args, options, follow_column_changes)

    def earliest(self, positions: list[str]) -> str:
        """The position in the lowest-numbered file, at the lowest offset there."""

        def place(position: str) -> tuple[int, int]:
            file, offset = _split(position)
            return int(file.rsplit(".", 1)[-1]) if file.rsplit(".", 1)[-1].isdigit() else 0, offset

        return min(positions, key=place)

    def column_changes(self) -> list[str]:
        """What the last stream said of changes logged under other columns."""
        return self._stream.column_changes if self._stream is not None else []

    def drained_to(self) -> str:
        """The event after the last one read."""
        assert self._stream is not None and self._stream.drained_to is not None, "the change stream did not end"
        file, offset = self._stream.drained_to
        return f"{file}:{offset}"

    def position_of(self, pos: int, near: str) -> str:
        """The offset of the transaction's first event, in the file its number names (numbered as ``near``'s)."""
        base, digits = _split(near)[0].rsplit(".", 1)
        return f"{base}.{pos >> 32:0{len(digits)}d}:{pos & 0xFFFFFFFF}"

    def confirm(self, position: str) -> None:
        """Nothing to tell: the server keeps its log by age, not by reader."""

    def release(self) -> bool:
        """Nothing to remove on the server."""
        return False

    def close(self) -> None:
        """Forget the stream (its connection closes)."""
        self._stream = None
