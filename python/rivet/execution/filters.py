"""SQL of the incremental and time-window filters: the wrapping, the literals, the window start."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rivet.errors import ConfigError

if TYPE_CHECKING:
    from rivet.plan.export import WindowSpec
    from rivet.sources import AnySource


def where(query: str, predicate: str) -> str:
    """``query`` restricted by ``predicate`` on its columns."""
    return f"SELECT * FROM ({query}) AS _rivet WHERE {predicate}"


def sql_literal(source: AnySource, value: Any) -> str:
    """``value`` as a literal the source compares correctly with its column (built by its dialect)."""
    if isinstance(value, bool):
        raise ConfigError("a boolean column cannot be a cursor")
    return source.dialect.literal(value)


CURSOR_TYPES = "an integer, decimal, float, date, timestamp or text column"


def cursor_type_ok(t: pa.DataType) -> bool:
    """Whether a column of type ``t`` can be a cursor."""
    return (
        pa.types.is_integer(t)
        or pa.types.is_decimal(t)
        or pa.types.is_floating(t)
        or pa.types.is_date32(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_string(t)
    )


def window_start(spec: WindowSpec, schema: pa.Schema, source: AnySource, now: dt.datetime) -> pa.Scalar:
    """UTC midnight ``days`` days before ``now``, as a value of the time column's type."""
    del source
    if spec.column not in schema.names:
        raise ConfigError(f"time_column '{spec.column}' is not a column of the query ({', '.join(schema.names)})")
    start = dt.datetime.combine(now.date() - dt.timedelta(days=spec.days), dt.time(), dt.timezone.utc)
    t = schema.field(spec.column).type
    if spec.kind == "unix":
        if not pa.types.is_integer(t):
            raise ConfigError(f"time_column '{spec.column}' is {t}; time_column_type: unix needs an integer column")
        return pa.scalar(int(start.timestamp()), t)
    if pa.types.is_timestamp(t):
        return pa.scalar(start if t.tz else start.replace(tzinfo=None), t)
    if pa.types.is_date32(t):
        return pa.scalar(start.date(), t)
    raise ConfigError(f"time_column '{spec.column}' is {t}; use a date or timestamp column, or time_column_type: unix")
