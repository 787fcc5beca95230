"""Comparing values read back from files with the source's values."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.types as pat


def same(expected: Any, actual: Any) -> bool:
    """Equality that treats NaN as equal to NaN and compares nested values element-wise."""
    if isinstance(expected, float) and isinstance(actual, float):
        return (math.isnan(expected) and math.isnan(actual)) or expected == actual
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(same(e, a) for e, a in zip(expected, actual, strict=True))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(same(expected[k], actual[k]) for k in expected)
    return (type(expected) is type(actual) and expected == actual) or (
        isinstance(expected, decimal.Decimal) and isinstance(actual, decimal.Decimal) and expected == actual
    )


def parse_csv_value(text: str | None, arrow_type: pa.DataType) -> Any:
    """Read one CSV field back as the documented rendering of ``arrow_type`` says it was written."""
    if text is None:
        return None
    t = arrow_type
    if pat.is_integer(t):
        return int(text)
    if pat.is_floating(t):
        # float32 is written with its own shortest text; read it back as a float32.
        return pa.scalar(float(text), t).as_py()
    if pat.is_decimal(t):
        return decimal.Decimal(text)
    if pat.is_boolean(t):
        assert text in ("true", "false"), text
        return text == "true"
    if pat.is_string(t):
        return text
    if pat.is_binary(t):
        assert text.startswith("\\x"), text
        return bytes.fromhex(text[2:])
    if pat.is_date(t):
        return dt.date.fromisoformat(text)
    if pat.is_time(t):
        return dt.time.fromisoformat(text)
    if pat.is_timestamp(t):
        value = dt.datetime.fromisoformat(text)
        return value.astimezone(dt.timezone.utc) if t.tz else value
    if pat.is_list(t):
        return [_json_element(v, t.value_type) for v in json.loads(text, parse_float=decimal.Decimal)]
    raise AssertionError(f"no CSV parser for {t}")


def _json_element(v: Any, t: pa.DataType) -> Any:
    if v is None:
        return None
    if pat.is_decimal(t):
        return decimal.Decimal(str(v))
    if pat.is_floating(t):
        return float(v)
    if pat.is_string(t) or pat.is_integer(t) or pat.is_boolean(t):
        return v
    return parse_csv_value(v, t)


def utc(value: Any) -> Any:
    """Aware datetimes (also inside lists) normalised to UTC for comparison."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc)
    if isinstance(value, list):
        return [utc(v) for v in value]
    return value


def wrong_columns(table: pa.Table, types: dict[str, pa.DataType], expected: dict[str, list[Any]]) -> dict[str, Any]:
    """Each column of ``types`` whose type or values in ``table`` differ from what is expected:
    its type in the table and the first differing (expected, actual) pair. Empty: all as expected."""
    wrong = {}
    for name, arrow_type in types.items():
        actual = [utc(v) for v in table.column(name).to_pylist()]
        differing = [(e, a) for e, a in zip(expected[name], actual, strict=True) if not same(e, a)]
        if table.schema.field(name).type != arrow_type or differing:
            wrong[name] = (table.schema.field(name).type, differing[:1])
    return wrong


def refused_columns(error: BaseException) -> set[str]:
    """The columns a ``source.engine: connectorx cannot read it exactly`` refusal lists."""
    lines = str(error).splitlines()[1:-1]
    return {line.removeprefix("  - column ").split(":")[0] for line in lines}
