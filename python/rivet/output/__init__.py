"""Output formats: Parquet and CSV part writers with size-based rotation (Delta and Iceberg commit Parquet parts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rivet.output.base import OutputFormat, PartTarget, PartWriter, StagedPart, output_format

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.output.parquet import DictionaryChoice
    from rivet.output.partition import Partitioning

__all__ = ["OutputFormat", "PartWriter", "StagedPart", "open_part_writer", "output_format"]


def open_part_writer(
    fmt: OutputFormat,
    schema: pa.Schema,
    staging: Callable[[int], Path],
    max_file_size: int | None,
    *,
    share: int = 1,
    dictionary: DictionaryChoice | None = None,
    partitioning: Partitioning | None = None,
) -> PartWriter:
    """A writer for ``fmt`` that stages parts at ``staging(n)``.

    ``share`` writers run at once and split the row-group memory; writers of one
    export pass the same ``dictionary`` so the encoding is decided once. With
    ``partitioning``, one writer per partition folder, sharing that memory.
    """
    target = PartTarget(fmt, schema, staging, max_file_size)
    if partitioning is not None:
        from rivet.output.parquet import ROW_GROUP_BYTES
        from rivet.output.partition import PartitionedWriter

        def one_partition(folder_staging: Callable[[int], Path]) -> PartWriter:
            return open_part_writer(fmt, schema, folder_staging, max_file_size, share=share, dictionary=dictionary)

        budget = (fmt.layout.row_group_bytes or ROW_GROUP_BYTES) // (share if fmt.layout.split_between_workers else 1)
        return PartitionedWriter(
            target,
            partitioning=partitioning,
            open_writer=one_partition,
            buffer_budget=budget,
        )
    if fmt.kind == "parquet":
        from rivet.output.parquet import ROW_GROUP_BYTES, ParquetPartWriter

        layout = fmt.layout
        group_bytes = layout.row_group_bytes or ROW_GROUP_BYTES
        if layout.split_between_workers:
            group_bytes //= share
        return ParquetPartWriter(target, row_group_bytes=group_bytes, dictionary=dictionary)
    from rivet.output.csv import CsvPartWriter

    return CsvPartWriter(target)
