"""Meta columns: ``_rivet_exported_at`` and ``_rivet_row_hash`` appended to every row written.

The hash is computed in the native module, over the Arrow batch and without the GIL;
its encoding is described in README.md ("Meta columns").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa

from rivet.errors import ConfigError

EXPORTED_AT = "_rivet_exported_at"
ROW_HASH = "_rivet_row_hash"


@dataclass(frozen=True)
class MetaColumns:
    """Which meta columns an export adds."""

    exported_at: bool = False
    # True: a hash of every column; column names: of those, in that order.
    row_hash: bool | tuple[str, ...] = False

    def stamp(self, export: str, exported_at: dt.datetime) -> Stamp:
        """The columns of one run: ``exported_at`` is the same on every row of the run."""
        micros = None
        if self.exported_at:
            # To the millisecond, as the state store keeps a run's start: a resumed run stamps alike.
            millis = (exported_at - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1)
            micros = millis * 1000
        return Stamp(export, micros, self.row_hash)


@dataclass(frozen=True)
class Stamp:
    """Appends one run's meta columns to batches; with none configured, batches pass unchanged."""

    export: str
    exported_at_us: int | None = None
    row_hash: bool | tuple[str, ...] = False

    @property
    def names(self) -> list[str]:
        """The columns this stamp adds, in order."""
        return ([EXPORTED_AT] if self.exported_at_us is not None else []) + ([ROW_HASH] if self.row_hash else [])

    def schema(self, schema: pa.Schema) -> pa.Schema:
        """The output schema: the query's columns, then the meta columns."""
        clash = [n for n in self.names if n in schema.names]
        if clash:
            raise ConfigError(
                f"export '{self.export}': the query already has a column named {clash[0]}, which "
                "meta_columns adds; rename it in the query or turn that meta column off"
            )
        missing = [c for c in self.hashed or () if c not in schema.names]
        if missing:
            raise ConfigError(
                f"export '{self.export}': meta_columns.row_hash names {', '.join(missing)}, which the query does not "
                f"return (it returns: {', '.join(schema.names)})"
            )
        if self.exported_at_us is not None:
            schema = schema.append(pa.field(EXPORTED_AT, pa.timestamp("us", tz="UTC"), nullable=False))
        if self.row_hash:
            schema = schema.append(pa.field(ROW_HASH, pa.int64(), nullable=False))
        return schema

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the meta columns appended."""
        if self.exported_at_us is None and not self.row_hash:
            return batch
        from rivet._native import with_meta_columns

        if self.hashed is None:
            return pa.record_batch(with_meta_columns(batch, self.exported_at_us, bool(self.row_hash)))
        # The hash of the listed columns only, as a hash of a batch of just those would be.
        hashed = pa.record_batch(with_meta_columns(batch.select(list(self.hashed)), None, True))
        stamped = pa.record_batch(with_meta_columns(batch, self.exported_at_us, False))
        return stamped.append_column(hashed.schema.field(ROW_HASH), hashed.column(ROW_HASH))

    @property
    def hashed(self) -> tuple[str, ...] | None:
        """The columns the row hash covers, when not every one."""
        return self.row_hash if isinstance(self.row_hash, tuple) else None
