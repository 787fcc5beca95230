r"""Rendering Arrow columns pyarrow's CSV writer cannot write (binary, lists, structs) as text.

Rules (documented in the README): binary as ``\\x`` + lowercase hex, as PostgreSQL
prints bytea; intervals as ISO-8601 durations in PostgreSQL's ``iso_8601``
style; durations (MySQL TIME) as ``[-]HH:MM:SS[.ffffff]``, hours past 24 kept, as
MySQL prints them; lists and other structs as JSON, with decimals as bare JSON numbers.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

LOGICAL_TYPE = b"rivet.logical_type"


def _needs_rendering(t: pa.DataType) -> bool:
    return pat.is_binary(t) or pat.is_large_binary(t) or pat.is_nested(t) or pat.is_duration(t)


def render_schema(schema: pa.Schema) -> pa.Schema:
    """The schema of rendered batches: the rendered columns become strings."""
    return pa.schema(
        [pa.field(f.name, pa.string(), True, f.metadata) if _needs_rendering(f.type) else f for f in schema]
    )


def render_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with every column pyarrow cannot write as CSV turned into text."""
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if not _needs_rendering(field.type):
            columns.append(column)
            continue
        if pat.is_duration(field.type):
            micros = column.cast(pa.duration("us")).cast(pa.int64()).to_pylist()
            text = [None if v is None else clock_duration(v) for v in micros]
        elif (field.metadata or {}).get(LOGICAL_TYPE) == b"interval":
            text = [
                None if v is None else iso_duration(v["months"], v["days"], v["microseconds"])
                for v in column.to_pylist()
            ]
        elif pat.is_binary(field.type) or pat.is_large_binary(field.type):
            text = [None if v is None else "\\x" + v.hex() for v in column.to_pylist()]
        else:
            text = [None if v is None else to_json(v) for v in column.to_pylist()]
        columns.append(pa.array(text, pa.string()))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def to_json(v: Any) -> str:
    """JSON text of a list/struct value, decimals as exact bare numbers."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | decimal.Decimal):
        return str(v)
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else json.dumps(str(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bytes):
        return json.dumps("\\x" + v.hex())
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return json.dumps(v.isoformat())
    if isinstance(v, list):
        return "[" + ",".join(to_json(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def clock_duration(micros: int) -> str:
    """``[-]HH:MM:SS[.ffffff]`` as MySQL prints a TIME (hours may pass 24)."""
    sign = "-" if micros < 0 else ""
    seconds, frac = divmod(abs(micros), 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}" + (f".{frac:06d}" if frac else "")


def iso_duration(months: int, days: int, micros: int) -> str:
    """ISO-8601 duration exactly as PostgreSQL prints it with ``intervalstyle = iso_8601``."""
    if months == 0 and days == 0 and micros == 0:
        return "PT0S"
    years, mons = int(months / 12), months - int(months / 12) * 12
    sign = -1 if micros < 0 else 1
    total = abs(micros)
    hours, rem = divmod(total, 3_600_000_000)
    minutes, rem = divmod(rem, 60_000_000)
    seconds, frac = divmod(rem, 1_000_000)
    out = "P"
    for value, unit in ((years, "Y"), (mons, "M"), (days, "D")):
        if value:
            out += f"{value}{unit}"
    if micros:
        out += "T"
        for value, unit in ((hours, "H"), (minutes, "M")):
            if value:
                out += f"{sign * value}{unit}"
        if seconds or frac:
            text = str(seconds) + (f".{frac:06d}".rstrip("0") if frac else "")
            out += ("-" if sign < 0 else "") + text + "S"
    return out
