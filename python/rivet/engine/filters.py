"""SQL of the incremental and time-window filters: the wrapping, the literals, the window start."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rivet.errors import ConfigError

if TYPE_CHECKING:
    from rivet.plan import WindowSpec
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
