"""Type stubs for the private native module. Users never import it; see rivet.export."""

from typing import Any, final

from typing_extensions import Self

__all__ = [
    "ArrowBatch",
    "ArrowColumn",
    "ArrowSchema",
    "BatchReader",
    "MyBinlog",
    "MySession",
    "PgReplication",
    "PgSession",
    "__version__",
    "build_profile",
    "connection_target",
    "connectorx_url",
    "describe_sqlite",
    "scan_sqlite",
    "uuids_as_bytes",
    "with_meta_columns",
]

__version__: str
build_profile: str

@final
class ArrowBatch:
    """One record batch, exported through the Arrow PyCapsule interface."""

    @property
    def num_rows(self) -> int: ...
    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]: ...
    def columns(self, text_views: bool = False) -> list[ArrowColumn]: ...

@final
class ArrowColumn:
    """One column of a batch, exported through the Arrow PyCapsule interface with its own release."""

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]: ...

@final
class ArrowSchema:
    """A schema, exported through the Arrow PyCapsule interface."""

    def __arrow_c_schema__(self) -> object: ...

@final
class BatchReader:
    """A consume-once stream of bounded record batches decoded on a background thread."""

    @property
    def rows_read(self) -> int: ...
    @property
    def finished(self) -> bool: ...
    @property
    def server_rows(self) -> int | None: ...
    @property
    def expected_rows(self) -> int | None: ...
    def __arrow_c_schema__(self) -> object: ...
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...
    def next_batch(self) -> ArrowBatch | None: ...
    def cancel(self) -> None: ...
    def close(self) -> None: ...

class _Session:
    """What both server sessions offer (one class each at runtime, written by one macro)."""

    @property
    def channel(self) -> str: ...
    def query(self, sql: str) -> list[list[str | None]]: ...
    def origins(self, query: str) -> list[tuple[str, str] | None]: ...
    def describe(
        self, query: str, decimal_overrides: dict[str, tuple[int, int]], text_overrides: list[str]
    ) -> ArrowSchema: ...
    def scan(
        self,
        query: str,
        describe_as: str | None,
        options: dict[str, Any],
        decimal_overrides: dict[str, tuple[int, int]],
        text_overrides: list[str],
    ) -> BatchReader: ...

@final
class PgSession(_Session):
    """A reusable PostgreSQL connection for planning queries and chunk scans."""

    def __new__(cls, conn: dict[str, Any]) -> Self: ...

@final
class MySession(_Session):
    """A reusable MySQL/MariaDB connection for planning queries and chunk scans."""

    def __new__(cls, conn: dict[str, Any]) -> Self: ...

@final
class MyBinlog:
    """A MySQL/MariaDB replica connection reading the binary log."""

    def __new__(cls, conn: dict[str, Any]) -> Self: ...
    def end(self) -> tuple[str, int]: ...
    def read(self, file: str, offset: int, server_id: int) -> list[dict[str, Any]]: ...
    def stream_changes(
        self,
        tables: list[tuple[str, str, str, int]],
        server_id: int,
        conn: dict[str, Any],
        options: dict[str, Any],
        follow_column_changes: bool,
    ) -> list[BatchReader]: ...
    @property
    def drained_to(self) -> tuple[str, int] | None: ...
    @property
    def column_changes(self) -> list[str]: ...

@final
class PgReplication:
    """A PostgreSQL logical replication connection: WAL position, pgoutput slots, decoded changes."""

    def __new__(cls, conn: dict[str, Any]) -> Self: ...
    def identify_system(self) -> dict[str, Any]: ...
    def create_slot(self, name: str, export_snapshot: bool) -> dict[str, Any]: ...
    def drop_slot(self, name: str) -> None: ...
    def start(self, slot: str, from_lsn: str, publications: list[str], binary: bool) -> None: ...
    def next_message(self) -> dict[str, Any] | None: ...
    def drain(self, until_lsn: str) -> tuple[list[dict[str, Any]], str | None]: ...
    def stream_changes(
        self,
        until_lsn: str,
        conn: dict[str, Any],
        tables: list[tuple[str, str, str]],
        options: dict[str, Any],
        follow_column_changes: bool,
        decimal_overrides: dict[str, tuple[int, int]],
    ) -> list[BatchReader]: ...
    @property
    def drained_to(self) -> str | None: ...
    @property
    def column_changes(self) -> list[str]: ...
    def confirm(self, flushed_lsn: str, reply: bool) -> None: ...
    def stop(self) -> None: ...

def connection_target(kind: str, conn: dict[str, Any]) -> dict[str, Any]: ...
def connectorx_url(
    kind: str, conn: dict[str, Any], channel: str | None = None, statement_timeout_ms: int | None = None
) -> str | None: ...
def scan_sqlite(path: str, query: str, options: dict[str, Any], type_overrides: dict[str, str]) -> BatchReader: ...
def describe_sqlite(path: str, query: str, type_overrides: dict[str, str]) -> ArrowSchema: ...
def with_meta_columns(batch: Any, exported_at_us: int | None, row_hash: bool) -> ArrowBatch: ...
def uuids_as_bytes(batch: Any) -> ArrowBatch: ...
