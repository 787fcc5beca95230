"""Rows counted three ways: what the server said it sent, what was decoded, what was written.

A read that ended without the reader's end-of-data marker, or whose counts disagree,
fails the export with an IntegrityError (exit code 3) before anything is published.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivet.errors import IntegrityError

if TYPE_CHECKING:
    from rivet._native import BatchReader
    from rivet.sources.connectorx import ConnectorxReader


def check_read(reader: BatchReader | ConnectorxReader, written: int, where: str) -> None:
    """Raise IntegrityError unless ``reader`` reached its end and every count agrees.

    ``written`` is the rows in the staged parts; ``where`` names the export (and chunk).
    """
    decoded = reader.rows_read
    if not reader.finished:
        raise IntegrityError(f"{where}: the reader stopped before the end of the data ({decoded} rows read)")
    server = reader.server_rows
    if server is not None and server != decoded:
        raise IntegrityError(f"{where}: the server reported {server} row(s) but {decoded} were decoded")
    if written != decoded:
        raise IntegrityError(f"{where}: {decoded} row(s) were read but {written} were written")
    expected = reader.expected_rows
    if expected is not None and expected != decoded:
        raise IntegrityError(
            f"{where}: reconcile: COUNT(*) in the same snapshot found {expected} row(s), the export read {decoded}"
        )
