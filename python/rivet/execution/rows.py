"""What a run does to the rows it read on their way to the writer.

Checks the schema against the last published one before the first row, counts what
the quality gates need, notes value widths for shape drift, and appends the meta
columns. One object per run, shared by both engines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivet.config.tuning import MIB
from rivet.errors import DataError
from rivet.execution.drift import DriftCheck
from rivet.plan.checks import output_schema

log = logging.getLogger("rivet")

if TYPE_CHECKING:
    import datetime as dt

    import pyarrow as pa

    from rivet.core.events import Observer
    from rivet.output.meta import Stamp
    from rivet.output.quality import QualityTracker
    from rivet.output.tables import TableCheck
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore
    from rivet.storage.destinations import Destination


@dataclass
class OutputRows:
    """The checks and meta columns of one run."""

    plan: ExportPlan
    stamp: Stamp
    drift: DriftCheck
    quality: QualityTracker | None = None
    warned_oversized: bool = False
    # The run's table format checks, running in their thread: their failure stops the read early.
    table_check: TableCheck | None = None

    @classmethod
    def for_run(
        cls,
        plan: ExportPlan,
        state: StateStore | None,
        events: Observer,
        started: dt.datetime,
        table_check: TableCheck | None = None,
    ) -> OutputRows:
        """The run's checks; ``started`` stamps ``_rivet_exported_at``."""
        return cls(plan, plan.meta.stamp(plan.name, started), DriftCheck(plan, state, events), table_check=table_check)

    def open(self, source_schema: pa.Schema, destination: Destination) -> pa.Schema:
        """The output schema, once drift and partitioning are checked.

        Counting for the quality gates starts afresh (on every attempt).
        """
        self.drift.check_schema(source_schema, destination)
        quality = self.plan.quality
        self.quality = quality.tracker(self.plan.name, source_schema) if quality is not None else None
        return output_schema(self.plan, source_schema, self.stamp)

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Count ``batch`` (as read) and return it as written."""
        self.check_size(batch)
        if self.table_check is not None:
            self.table_check.raise_if_failed()
        # Partitioned lake tables only (the table format is looked up for those alone, batch by batch).
        if self.plan.partitioning is not None and (table := self.plan.lake_table) is not None:
            from rivet.output.tables.base import check_partition_values

            check_partition_values(batch, self.plan.partitioning, table.label, self.plan.name)
        if self.quality is not None:
            self.quality.observe(batch)
        self.drift.observe(batch)
        # uuid and json in Parquet's own types after the meta columns: a row's hash is the same either way.
        return self.plan.format.layout.types(self.stamp(batch), self.plan.name)

    def check_size(self, batch: pa.RecordBatch) -> None:
        """``max_batch_memory_mb``: a single row above it is warned about or fails the export.

        rivet's reader cuts batches at the cap, so only a single row can be above it; the
        writers cut any larger batch (connectorx cuts by rows) into row groups anyway.
        ``max_value_mb``: a single value above it fails the export.
        """
        cap = self.plan.tuning.max_batch_bytes
        if cap is not None and batch.num_rows == 1 and batch.nbytes > cap:
            self._oversized(batch, cap)
        if self.plan.tuning.max_value_bytes is not None:
            check_value_sizes(batch, self.plan.tuning.max_value_bytes, self.plan.name)

    def _oversized(self, batch: pa.RecordBatch, cap: int) -> None:
        """A batch above max_batch_memory_mb: one huge row (the reader cuts at the cap) or a connectorx batch."""
        tuning = self.plan.tuning
        what = f"a batch of {batch.num_rows} row(s) holds {batch.nbytes / MIB:.1f} MiB, above max_batch_memory_mb "
        what += f"({cap / MIB:g})"
        if tuning.on_batch_memory_exceeded == "fail":
            raise DataError(f"export '{self.plan.name}': {what} (on_batch_memory_exceeded: fail)")
        if tuning.on_batch_memory_exceeded == "warn" and not self.warned_oversized:
            self.warned_oversized = True
            log.warning("export %s: %s; it is written whole", self.plan.name, what)

    def finish(self) -> None:
        """After the last row: a failed quality gate raises; shape drift warns."""
        if self.quality is not None:
            self.quality.check()
        self.drift.warn_about_shape()


# The Arrow types whose single values can be of any size.
VARIABLE_WIDTH = ("string", "large_string", "string_view", "binary", "large_binary", "binary_view")


def check_value_sizes(batch: pa.RecordBatch, limit: int, export: str) -> None:
    """Raise DataError naming the column when a text or binary value of ``batch`` is above ``limit`` bytes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for field, column in zip(batch.schema, batch.columns, strict=True):
        if not any(getattr(pa.types, f"is_{kind}")(field.type) for kind in VARIABLE_WIDTH):
            continue
        largest = pc.max(pc.binary_length(column)).as_py()
        if largest is not None and largest > limit:
            raise DataError(
                f"export '{export}': column '{field.name}' holds a single value of {largest / MIB:.1f} MiB, above "
                f"tuning.max_value_mb ({limit / MIB:g}); raise it (0: no limit) if such values are expected",
                column=field.name,
            )
