"""Output formats: Parquet and CSV part writers with size-based rotation."""

from __future__ import annotations

from rivet.formats.base import OutputFormat, PartWriter, StagedPart, output_format

__all__ = ["OutputFormat", "PartWriter", "StagedPart", "output_format", "open_part_writer"]


def open_part_writer(fmt: OutputFormat, schema, staging, max_file_size: int | None) -> PartWriter:  # type: ignore[no-untyped-def]
    """A writer for ``fmt`` that stages parts at ``staging(n)``."""
    if fmt.kind == "parquet":
        from rivet.formats.parquet import ParquetPartWriter

        return ParquetPartWriter(fmt, schema, staging, max_file_size)
    from rivet.formats.csv import CsvPartWriter

    return CsvPartWriter(fmt, schema, staging, max_file_size)
