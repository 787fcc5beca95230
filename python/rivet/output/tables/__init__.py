"""Table formats (Delta Lake, Iceberg): checked before a run reads, their table checked while it reads.

A run whose format cannot be written (its library missing, a destination it does not
support) fails before any row is read. The library takes a good part of a second to
import, and the table is looked up (a Delta log, an Iceberg catalog: is it where the
destination is, partitioned as the export is): a thread does both while the rows are
read (the scan and the writer release the GIL), and the run waits for it before it
commits.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rivet.output.tables.base import CHECK_TIMEOUT_S, TableFormat
from rivet.output.tables.delta import DeltaFormat
from rivet.output.tables.iceberg import IcebergFormat, IcebergTable

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.output.partition import Partitioning
    from rivet.storage.destinations import DestinationSpec

# Each table format by its format: name; an Iceberg one is made for its table.
_FORMATS: dict[str, Callable[[IcebergTable | None], TableFormat]] = {
    DeltaFormat.name: lambda _: DeltaFormat(),
    IcebergFormat.name: lambda table: IcebergFormat(_given(table)),
}
TABLE_FORMATS = tuple(_FORMATS)


def table_format(name: str, iceberg: IcebergTable | None = None) -> TableFormat:
    """The table format ``format:`` names (``iceberg``: the export's Iceberg table)."""
    return _FORMATS[name](iceberg)


def _given(table: IcebergTable | None) -> IcebergTable:
    if table is None:
        raise ValueError("an Iceberg table format needs its table (catalog, namespace, name)")
    return table


class TableCheck:
    """The checks of one run's table format: the quick ones at once, the slow ones in a thread."""

    def __init__(
        self, export: str, fmt: TableFormat, destination: DestinationSpec, partitioning: Partitioning | None
    ) -> None:
        fmt.check_installed()
        fmt.check_destination(destination)
        self.export = export
        self.format = fmt
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(destination, partitioning), name="rivet-table-check", daemon=True
        )
        self._thread.start()

    def _run(self, destination: DestinationSpec, partitioning: Partitioning | None) -> None:
        try:
            for name in self.format.modules:
                importlib.import_module(name)
            from rivet.storage.destinations import Destination

            self.format.check_table(Destination(destination), partitioning)
        except BaseException as e:  # noqa: BLE001 - raised in the run's own thread by wait()
            self._error = e

    def finish(self) -> None:
        """Let the thread end before the run does (bounded).

        A process that exits while the thread is still importing the library's native code
        can crash (SIGSEGV) in the interpreter's shutdown.
        """
        self._thread.join(_timeout())

    def raise_if_failed(self) -> None:
        """Raise what the slow checks found so far, without waiting (between batches)."""
        if self._error is not None:
            raise self._error

    def wait(self, schema: pa.Schema) -> None:
        """Raise what the slow checks found, and what the library says of ``schema`` (before the commit).

        A catalog or store that never answers (pyiceberg's REST client sets no timeout)
        fails the run after ``RIVET_TABLE_CHECK_TIMEOUT_S`` seconds, before it publishes.
        """
        timeout = _timeout()
        self._thread.join(timeout)
        if self._thread.is_alive():
            from rivet.errors import DestinationError

            raise DestinationError(
                f"export '{self.export}': the {self.format.label} table's catalog or "
                f"store did not answer in {timeout:g} s; nothing was published"
            )
        self.raise_if_failed()
        self.format.check_columns(schema, self.export, by_library=True)


def _timeout() -> float:
    """Seconds the table checks may take (``RIVET_TABLE_CHECK_TIMEOUT_S``)."""
    return float(os.environ.get("RIVET_TABLE_CHECK_TIMEOUT_S", CHECK_TIMEOUT_S))


@dataclass(frozen=True)
class TableVersion:
    """The table a run committed to, as the run left it: its format, location and version.

    ``version`` is the Delta table version or the Iceberg snapshot id (None: an Iceberg
    table without a snapshot yet).
    """

    format: str
    location: str
    version: int | None
    destination: DestinationSpec = field(repr=False)
    iceberg: IcebergTable | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        from rivet.core.redact import redact_url

        shown = self.iceberg.shown if self.iceberg is not None else None
        location = redact_url(self.location)
        return {"format": self.format, "location": location, "version": self.version, "table": shown}

    def open(self) -> Any:
        """The table itself: a ``deltalake.DeltaTable`` at this version, or a pyiceberg ``Table``."""
        return table_format(self.format, self.iceberg).open(self.destination, self.version)

    def to_arrow(self) -> pa.Table:
        """Every row of the table at this version (the live parts, as its log lists them)."""
        return table_format(self.format, self.iceberg).read(self.destination, self.version)

    def scan(self) -> Any:
        """A polars LazyFrame over the table at this version."""
        return table_format(self.format, self.iceberg).scan(self.destination, self.version)
