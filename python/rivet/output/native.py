"""Parquet's own types for UUID and JSON columns (``parquet: {uuid: native, json: native}``).

The readers hand ``uuid`` and ``json``/``jsonb`` values over as text, the column tagged
``rivet.logical_type``. Native, a uuid column is written as Parquet's UUID (16 bytes, Arrow's
``arrow.uuid``) and a json column as Parquet's JSON (its text, Arrow's ``arrow.json``), so
DuckDB, Spark and ClickHouse type them on read. Off (the default for configs written before),
both stay text and nothing changes under an existing reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivet.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

LOGICAL_TYPE = b"rivet.logical_type"


@dataclass(frozen=True)
class NativeTypes:
    """Which of uuid and json columns are written in Parquet's own type."""

    uuid: bool = False
    json: bool = False

    def _logical(self, field: pa.Field) -> str | None:
        import pyarrow as pa

        if field.type not in (pa.string(), pa.large_string(), pa.string_view()):
            return None
        logical = (field.metadata or {}).get(LOGICAL_TYPE)
        if logical == b"uuid" and self.uuid:
            return "uuid"
        if logical == b"json" and self.json:
            return "json"
        return None

    def schema(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` as written."""
        if not (self.uuid or self.json):
            return schema
        import pyarrow as pa

        for i, field in enumerate(schema):
            logical = self._logical(field)
            if logical is not None:
                native = pa.uuid() if logical == "uuid" else pa.json_(field.type)
                schema = schema.set(i, field.with_type(native))
        return schema

    def __call__(self, batch: pa.RecordBatch, export: str) -> pa.RecordBatch:
        """``batch`` as written (``export`` names it in errors)."""
        if not (self.uuid or self.json):
            return batch
        import pyarrow as pa

        columns = list(batch.columns)
        changed = False
        for i, field in enumerate(batch.schema):
            logical = self._logical(field)
            if logical == "uuid":
                columns[i] = pa.ExtensionArray.from_storage(pa.uuid(), _uuid_bytes(columns[i], field.name, export))
            elif logical == "json":
                columns[i] = pa.ExtensionArray.from_storage(pa.json_(field.type), columns[i])
            changed = changed or logical is not None
        return pa.record_batch(columns, schema=self.schema(batch.schema)) if changed else batch


def _uuid_bytes(text: pa.Array, column: str, export: str) -> pa.Array:
    """The 16 bytes of each UUID of ``text`` (its canonical text), NULLs kept."""
    import pyarrow as pa

    from rivet._native import uuids_as_bytes

    try:
        return pa.record_batch(uuids_as_bytes(pa.record_batch([text], names=[column]))).column(0)
    except DataError as e:
        raise DataError(f"export '{export}': {e}; write it as text with parquet: {{uuid: string}}") from e
