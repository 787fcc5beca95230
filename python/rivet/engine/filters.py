"""Row filters of the incremental and time-window modes, and the cursor an incremental run advances.

Incremental reads take rows whose cursor is at or after the stored one (``>=``): a
row that arrives later with the boundary value is not lost, and the rows that carry
the boundary value are exported again by the next run (at-least-once at the boundary).
Rows whose cursor is NULL are read too, and fail the run: they would never be exported.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from rivet.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rivet.plan import CursorSpec, WindowSpec
    from rivet.sources import AnySource


def where(query: str, predicate: str) -> str:
    """``query`` restricted by ``predicate`` on its columns."""
    return f"SELECT * FROM ({query}) AS _rivet WHERE {predicate}"


def sql_literal(source: AnySource, value: Any) -> str:
    """``value`` as a literal the source compares correctly with its column."""
    postgres = source.kind == "postgres"
    if isinstance(value, bool):
        raise ConfigError("a boolean column cannot be a cursor")
    if isinstance(value, int | decimal.Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            text = value.astimezone(dt.timezone.utc).isoformat(sep=" ")
            return f"'{text}'::timestamptz" if postgres else f"'{text[:-6]}'"
        return f"'{value.isoformat(sep=' ')}'::timestamp" if postgres else f"'{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"'{value.isoformat()}'::date" if postgres else f"'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise ConfigError(f"a {type(value).__name__} value cannot be a cursor")


CURSOR_TYPES = "an integer, decimal, float, date, timestamp or text column"


def _cursor_type_ok(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_decimal(t)
        or pa.types.is_floating(t)
        or pa.types.is_date32(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_string(t)
    )


class CursorTracker:
    """Follows the largest cursor value written and refuses NULL cursors."""

    def __init__(self, spec: CursorSpec, schema: pa.Schema, source: AnySource) -> None:
        for column in filter(None, (spec.column, spec.fallback)):
            if column not in schema.names:
                raise ConfigError(f"cursor column '{column}' is not a column of the query ({', '.join(schema.names)})")
            if not _cursor_type_ok(schema.field(column).type):
                raise ConfigError(
                    f"cursor column '{column}' is {schema.field(column).type}; incremental needs {CURSOR_TYPES}"
                )
        self.spec = spec
        self.source = source
        self.value: Any = None

    @property
    def expression(self) -> str:
        """The SQL the cursor compares: the column, or COALESCE(column, fallback)."""
        q = self.source.quote_identifier
        if self.spec.fallback:
            return f"COALESCE({q(self.spec.column)}, {q(self.spec.fallback)})"
        return q(self.spec.column)

    def predicate(self, stored_literal: str | None) -> str | None:
        """Rows after the stored cursor, and NULL cursors (so they are seen and refused)."""
        if stored_literal is None:
            return None
        return f"({self.expression} >= {stored_literal} OR {self.expression} IS NULL)"

    def observe(self, batch: pa.RecordBatch) -> None:
        """Take a written batch into account."""
        values = batch.column(self.spec.column)
        if self.spec.fallback:
            values = pc.coalesce(values, batch.column(self.spec.fallback))
        if values.null_count:
            what = f"COALESCE({self.spec.column}, {self.spec.fallback})" if self.spec.fallback else self.spec.column
            hint = "" if self.spec.fallback else "; use incremental_cursor_mode: coalesce with cursor_fallback_column"
            raise DataError(
                f"cursor {what} is NULL in {values.null_count} row(s); such rows would never be exported{hint}",
                column=self.spec.column,
            )
        if len(values):
            top = pc.max(values).as_py()
            if self.value is None or top > self.value:
                self.value = top

    def literal(self) -> str | None:
        """The SQL literal of the largest value seen."""
        return None if self.value is None else sql_literal(self.source, self.value)


def window_predicate(spec: WindowSpec, schema: pa.Schema, source: AnySource, now: dt.datetime) -> str:
    """Rows from UTC midnight ``days`` days ago on."""
    if spec.column not in schema.names:
        raise ConfigError(f"time_column '{spec.column}' is not a column of the query ({', '.join(schema.names)})")
    start = dt.datetime.combine(now.date() - dt.timedelta(days=spec.days), dt.time(), dt.timezone.utc)
    column = source.quote_identifier(spec.column)
    if spec.kind == "unix":
        return f"{column} >= {int(start.timestamp())}"
    t = schema.field(spec.column).type
    if pa.types.is_timestamp(t):
        value: Any = start if t.tz else start.replace(tzinfo=None)
    elif pa.types.is_date32(t):
        value = start.date()
    else:
        raise ConfigError(
            f"time_column '{spec.column}' is {t}; use a date or timestamp column, or time_column_type: unix"
        )
    return f"{column} >= {sql_literal(source, value)}"
