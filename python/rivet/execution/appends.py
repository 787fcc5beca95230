"""Exactly-once appends: where an incremental or time-window run starts, and what it skips.

A run reads the rows at or after the stored boundary value (``>=``), so a row that
arrives later with the boundary value is never lost, and skips the rows it already
exported at that value: their hashes are kept in the state store. A boundary with
more than ``BOUNDARY_CAP`` rows is not hashed; the next run then starts strictly
after it (``>``) and says so.

Incremental exports keep one boundary (their cursor), whatever the destination.
Time-window exports keep one per destination: a new folder (``{date}``) gets the
whole window, the same folder only the rows it does not hold yet.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from rivet.core.runinfo import iso, utc_now
from rivet.errors import ConfigError, DataError
from rivet.execution.filters import CURSOR_TYPES, cursor_type_ok, sql_literal, window_start

if TYPE_CHECKING:
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore

log = logging.getLogger("rivet")

# The most boundary rows remembered by hash; beyond it the next run starts strictly after.
BOUNDARY_CAP = 1_000_000
CURSOR_SCOPE = "cursor"


def _canonical(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.timedelta):
        return f"{value.days}d{value.seconds}s{value.microseconds}us"
    return str(value)


def row_hashes(batch: pa.RecordBatch) -> list[int]:
    """A 64-bit hash of every row's values (the same row gives the same hash in every run)."""
    columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
    out = []
    for row in zip(*columns, strict=True):
        text = json.dumps(row, default=_canonical, separators=(",", ":"), sort_keys=True)
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        out.append(int.from_bytes(digest, "big", signed=True))
    return out


def as_text(value: pa.Scalar) -> str:
    """A cursor value as text that casts back to the same value of its type."""
    return str(pc.cast(pa.array([value.as_py()], value.type), pa.string())[0].as_py())


@dataclass
class AppendCursor:
    """The boundary of one appending run: the SQL filter, and the rows to skip and remember."""

    plan: ExportPlan
    column: str
    fallback: str | None
    column_type: pa.DataType
    scope: str
    stored: pa.Scalar | None = None
    stored_hashes: set[int] = field(default_factory=set)
    strict: bool = False
    top: pa.Scalar | None = None
    top_hashes: list[int] | None = field(default_factory=list)
    skipped: int = 0
    # Columns added since the boundary rows were hashed: left out when they are compared.
    added_columns: list[str] = field(default_factory=list)

    def expression(self) -> str:
        """The SQL the cursor compares: the column, or COALESCE(column, fallback)."""
        q = self.plan.source.quote_identifier
        if self.fallback:
            return f"COALESCE({q(self.column)}, {q(self.fallback)})"
        return q(self.column)

    def reset(self) -> None:
        """Forget what a failed attempt saw."""
        self.top, self.top_hashes, self.skipped = None, [], 0

    def observe(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Take a batch into account; the batch without the rows exported before."""
        values = batch.column(self.column)
        if self.fallback:
            values = pc.coalesce(values, batch.column(self.fallback))
        if values.null_count:
            what = f"COALESCE({self.column}, {self.fallback})" if self.fallback else self.column
            hint = "" if self.fallback else "; use incremental_cursor_mode: coalesce with cursor_fallback_column"
            raise DataError(
                f"cursor {what} is NULL in at least {values.null_count} row(s) (the read stopped at the first batch "
                f"holding one); such rows would never be exported{hint}",
                column=self.column,
            )
        if not len(values):
            return batch
        self._follow_top(batch, values)
        if self.stored is None or not self.stored_hashes:
            return batch
        at_boundary = pc.equal(values, self.stored)
        if not pc.any(at_boundary).as_py():
            return batch
        indexes = pc.indices_nonzero(at_boundary)
        at = batch.take(indexes)
        if self.added_columns:
            at = at.select([n for n in at.schema.names if n not in self.added_columns])
        seen = [h in self.stored_hashes for h in row_hashes(at)]
        drop = pa.array([False] * len(values))
        if any(seen):
            mask = [False] * len(values)
            for i, was_seen in zip(indexes.to_pylist(), seen, strict=True):
                mask[i] = was_seen
            drop = pa.array(mask)
        self.skipped += sum(seen)
        return batch.filter(pc.invert(drop))

    def _follow_top(self, batch: pa.RecordBatch, values: pa.Array) -> None:
        """Track the largest value and the hashes of the rows that carry it."""
        batch_top = pc.max(values)
        if self.top is not None and pc.less(batch_top, self.top).as_py():
            return
        if self.top is None or pc.greater(batch_top, self.top).as_py():
            self.top, self.top_hashes = batch_top, []
        if self.top_hashes is None:
            return
        rows = batch.filter(pc.equal(values, batch_top))
        if len(self.top_hashes) + rows.num_rows > BOUNDARY_CAP:
            self.top_hashes = None
            return
        self.top_hashes.extend(row_hashes(rows))

    def commit(self, state: StateStore, run_id: str) -> None:
        """Remember the new boundary (called inside the run's state commit)."""
        if self.top is None:
            return
        now = iso(utc_now())
        literal = sql_literal(self.plan.source, self.top.as_py())
        if self.top_hashes is None:
            log.warning(
                "export %s: more than %d rows share the cursor value %s; the next run starts strictly after it",
                self.plan.name,
                BOUNDARY_CAP,
                self.top.as_py(),
            )
        if self.scope == CURSOR_SCOPE:
            state.set_cursor(self.plan.key, str(self.top.as_py()), literal, run_id, now)
        state.set_boundary(self.plan.key, self.scope, as_text(self.top), literal, self.top_hashes, run_id, now)


def open_cursor(
    plan: ExportPlan, schema: pa.Schema, state: StateStore, scope: str, started: dt.datetime
) -> tuple[AppendCursor, str | None]:
    """The cursor of an appending run and its SQL filter (None: read everything)."""
    if plan.cursor is not None:
        column, fallback = plan.cursor.column, plan.cursor.fallback
    else:
        assert plan.window is not None
        column, fallback = plan.window.column, None
    for name in filter(None, (column, fallback)):
        if name not in schema.names:
            raise ConfigError(f"cursor column '{name}' is not a column of the query ({', '.join(schema.names)})")
        if not cursor_type_ok(schema.field(name).type):
            raise ConfigError(f"cursor column '{name}' is {schema.field(name).type}; incremental needs {CURSOR_TYPES}")
    cursor = AppendCursor(plan, column, fallback, schema.field(column).type, scope)
    boundary = state.boundary(plan.key, scope)
    literal = None
    if boundary is not None:
        cursor.stored = _typed(boundary.value, cursor.column_type, plan.name)
        cursor.strict = boundary.strict
        cursor.stored_hashes = set(state.boundary_hashes(plan.key, scope))
    elif scope == CURSOR_SCOPE and (legacy := state.cursor(plan.key)) is not None:
        # A cursor stored before boundaries were kept: its boundary rows are read again once.
        cursor.stored = _typed(legacy.value, cursor.column_type, plan.name)
    if cursor.stored is not None:
        # The literal is built again from the typed value: stored SQL text is never trusted.
        literal = sql_literal(plan.source, cursor.stored.as_py())
    return cursor, _predicate(plan, cursor, schema, literal, started)


def _typed(text: str, column_type: pa.DataType, export: str) -> pa.Scalar:
    """A stored cursor value as a value of the cursor column's type."""
    try:
        return pa.array([text]).cast(column_type)[0]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if pa.types.is_timestamp(column_type) and column_type.tz is not None:
        # A value without an offset (the original tool wrote them so) names a UTC time.
        try:
            return pa.array([text]).cast(pa.timestamp(column_type.unit)).cast(column_type)[0]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    raise ConfigError(
        f"export '{export}': the stored cursor {text!r} is not a {column_type} value, the cursor column's "
        f"type; reset it with `rivet state reset -e {export}`"
    ) from None


def _predicate(
    plan: ExportPlan, cursor: AppendCursor, schema: pa.Schema, literal: str | None, started: dt.datetime
) -> str | None:
    expr = cursor.expression()
    if plan.window is not None:
        start = window_start(plan.window, schema, plan.source, started)
        if cursor.stored is None or literal is None or pc.less(cursor.stored, start).as_py():
            # A new destination, or a boundary older than the window: the whole window.
            cursor.stored, cursor.stored_hashes = None, set()
            return f"{expr} >= {sql_literal(plan.source, start.as_py())}"
        return f"{expr} {'>' if cursor.strict else '>='} {literal}"
    if literal is None:
        return None
    # NULL cursors are read too, so they are seen and refused rather than skipped forever.
    return f"({expr} {'>' if cursor.strict else '>='} {literal} OR {expr} IS NULL)"
