"""Quality gates: checks on the rows actually written, evaluated before anything is published.

A failed gate raises ``QualityError`` (exit code 3): the run publishes nothing and moves
no cursor. Uniqueness is tracked as the row-hash encoding of each value (README, "Meta
columns"), so it holds across batches, chunks and workers; NULLs are not values and are
never duplicates, as in a SQL UNIQUE constraint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from rivet.errors import ConfigError, QualityError

if TYPE_CHECKING:
    from rivet.output.manifest import CommittedPart
    from rivet.storage.destinations import Destination

log = logging.getLogger("rivet")

# Distinct values remembered per unique column unless unique_max_entries says otherwise
# (about 70 bytes each: 70 MB at the default).
DEFAULT_UNIQUE_MAX_ENTRIES = 1_000_000


@dataclass(frozen=True)
class QualitySpec:
    """The ``quality:`` block of one export."""

    row_count_min: int | None = None
    row_count_max: int | None = None
    null_ratio_max: tuple[tuple[str, float], ...] = ()
    unique_columns: tuple[str, ...] = ()
    unique_max_entries: int = DEFAULT_UNIQUE_MAX_ENTRIES

    def tracker(self, export: str, schema: pa.Schema) -> QualityTracker:
        """A tracker for one run; every column the gates name must be in ``schema``."""
        named = [c for c, _ in self.null_ratio_max] + list(self.unique_columns)
        missing = [c for c in named if c not in schema.names]
        if missing:
            raise ConfigError(
                f"export '{export}': quality names column {missing[0]!r}, which the query does not return "
                f"(it returns {', '.join(schema.names)})"
            )
        return QualityTracker(export, self)


@dataclass
class QualityTracker:
    """Counts what the gates need over every batch written; safe to share between workers."""

    export: str
    spec: QualitySpec
    rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)
    distinct: dict[str, set[int]] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    capped: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, batch: pa.RecordBatch) -> None:
        """Count one batch (as written, before meta columns)."""
        hashes = {c: _value_hashes(batch.column(c)) for c in self.spec.unique_columns if c not in self.capped}
        with self._lock:
            self.rows += batch.num_rows
            for column, _ in self.spec.null_ratio_max:
                self.nulls[column] = self.nulls.get(column, 0) + batch.column(column).null_count
            for column, values in hashes.items():
                self._count_unique(column, values)

    def __getstate__(self) -> dict[str, Any]:
        # A part's counts travel from a cluster's worker; the lock stays behind.
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def part(self) -> QualityTracker:
        """A tracker for the rows of one part: merged in when the part is published, dropped if it is not."""
        return QualityTracker(self.export, self.spec)

    def merge(self, part: QualityTracker) -> None:
        """Add the counts of a published part."""
        with self._lock:
            self.rows += part.rows
            for column, nulls in part.nulls.items():
                self.nulls[column] = self.nulls.get(column, 0) + nulls
            for column, duplicates in part.duplicates.items():
                self.duplicates[column] = self.duplicates.get(column, 0) + duplicates
            for column, values in part.distinct.items():
                self._count_unique(column, list(values))
            self.capped |= part.capped

    def observe_all(self, batches: Iterable[pa.RecordBatch]) -> None:
        """Count rows written by an earlier process of this run (a resumed run reads them back)."""
        for batch in batches:
            self.observe(batch)

    def _count_unique(self, column: str, values: list[int]) -> None:
        if column in self.capped:
            return
        seen = self.distinct.setdefault(column, set())
        before = len(seen)
        seen.update(values)
        self.duplicates[column] = self.duplicates.get(column, 0) + len(values) - (len(seen) - before)
        if len(seen) >= self.spec.unique_max_entries:
            self.capped.add(column)
            seen.clear()
            log.warning(
                "export %s: quality unique_columns %s: stopped checking after %d distinct values "
                "(unique_max_entries); duplicates among them: %d",
                self.export,
                column,
                self.spec.unique_max_entries,
                self.duplicates[column],
            )

    def failures(self) -> list[str]:
        """One line per failed gate, with its numbers."""
        spec, failed = self.spec, []
        if spec.row_count_min is not None and self.rows < spec.row_count_min:
            failed.append(f"row_count_min: {self.rows} rows < {spec.row_count_min}")
        if spec.row_count_max is not None and self.rows > spec.row_count_max:
            failed.append(f"row_count_max: {self.rows} rows > {spec.row_count_max}")
        for column, limit in spec.null_ratio_max:
            if self.rows:
                ratio = self.nulls.get(column, 0) / self.rows
                if ratio > limit:
                    failed.append(
                        f"null_ratio_max {column}: {ratio:.4f} ({self.nulls[column]} of {self.rows} rows) > {limit}"
                    )
        for column in spec.unique_columns:
            if self.duplicates.get(column):
                failed.append(f"unique_columns {column}: {self.duplicates[column]} duplicate value(s)")
        return failed

    def check(self) -> None:
        """Raise ``QualityError`` when a gate failed."""
        failed = self.failures()
        if failed:
            raise QualityError(
                f"export '{self.export}': quality gate failed, nothing published:\n  - " + "\n  - ".join(failed),
                failures=failed,
            )


def written_batches(
    destination: Destination, parts: Iterable[CommittedPart], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """The rows of published Parquet parts, as they were written (the columns of ``schema``)."""
    import pyarrow.parquet as pq

    for part in parts:
        with destination.open(part.name) as f:
            # On this thread: Arrow's pool would release the Python file's buffers late (see results.to_arrow).
            yield from pq.ParquetFile(f).iter_batches(columns=schema.names, use_threads=False)


def _value_hashes(column: pa.Array) -> list[int]:
    """The row hash of every non-NULL value of ``column``."""
    from rivet._native import with_meta_columns

    values = column.filter(pc.is_valid(column)) if column.null_count else column
    hashed = pa.record_batch(with_meta_columns(pa.record_batch([values], names=["v"]), None, True))
    return hashed.column(1).to_pylist()
