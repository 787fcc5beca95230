"""``write: merge`` into an Iceberg table: the source's rows as they are now, one transaction a run.

A run's deletes and upserts are one pyiceberg transaction (its snapshots commit together:
a reader sees the table before the run or after it). Every snapshot carries the run's
source positions in its summary (``rivet.export``, ``rivet.run_id``, ``rivet.from``,
``rivet.position``), which the next run reads to tell whether a run killed after its
commit was already merged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from rivet.errors import DestinationError
from rivet.output.tables.base import MERGE_EXPORT, MERGE_OP, nullable
from rivet.output.tables.iceberg import _catalog, _found, partitioned_schema, table_location

if TYPE_CHECKING:
    from rivet.output.tables.iceberg import IcebergTable
    from rivet.storage.destinations import DestinationSpec


def _optional(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` under ``schema`` (the same columns, every one optional, as the table's are)."""
    return pa.RecordBatch.from_arrays(batch.columns, schema=schema)


def replace_rows(
    table: IcebergTable, spec: DestinationSpec, rows: pa.RecordBatchReader, metadata: dict[str, str]
) -> None:
    """Make the table hold exactly ``rows``, created when missing, in one transaction."""
    schema = nullable(rows.schema)
    stream = pa.RecordBatchReader.from_batches(schema, (_optional(b, schema) for b in rows))
    with _catalog(table, spec, "writing") as catalog:
        catalog.create_namespace_if_not_exists(table.namespace)
        found = _found(catalog, table)
        if found is None:
            created, partitions = partitioned_schema(schema, None)
            found = catalog.create_table(
                (table.namespace, table.name), schema=created, location=table_location(spec), partition_spec=partitions
            )
        with found.transaction() as transaction:
            with transaction.update_schema() as update:
                update.union_by_name(schema)
            transaction.overwrite(stream, snapshot_properties=metadata)


def merge_rows(
    table: IcebergTable,
    spec: DestinationSpec,
    rows: pa.Table,
    keys: tuple[str, ...],
    columns: list[str],
    metadata: dict[str, str],
) -> None:
    """Delete the keys whose ``__op`` is ``delete`` and upsert the other rows by ``keys``, in one transaction."""
    deleted = rows.filter(pc.equal(rows[MERGE_OP], "delete"))
    kept = rows.filter(pc.not_equal(rows[MERGE_OP], "delete")).select(columns)
    schema = nullable(kept.schema)
    with _catalog(table, spec, "merging into") as catalog:
        found = _found(catalog, table)
        if found is None:
            raise DestinationError(f"the Iceberg table {table.shown} is no longer in its catalog")
        with found.transaction() as transaction:
            if deleted.num_rows:
                transaction.delete(_matching(deleted, keys), snapshot_properties=metadata)
            if kept.num_rows:
                transaction.upsert(
                    pa.Table.from_batches([_optional(b, schema) for b in kept.to_batches()], schema=schema),
                    join_cols=list(keys),
                    snapshot_properties=metadata,
                )


def _one_of(column: str, values: list[Any]) -> Any:
    """``column IN values``, as pyiceberg builds it (its stubs name the arguments otherwise)."""
    from pyiceberg.expressions import In

    return In(column, set(values))  # type: ignore[call-arg, arg-type]


def _matching(rows: pa.Table, keys: tuple[str, ...]) -> Any:
    """The filter that selects the table's rows with the keys of ``rows``."""
    from pyiceberg.expressions import And, EqualTo, Or

    if len(keys) == 1:
        return _one_of(keys[0], rows[keys[0]].to_pylist())
    matches = [And(*(EqualTo(k, v) for k, v in zip(keys, values, strict=True)))  # type: ignore[call-arg, arg-type]
               for values in zip(*(rows[k].to_pylist() for k in keys), strict=True)]  # fmt: skip
    return matches[0] if len(matches) == 1 else Or(*matches)


def last_merge(table: IcebergTable, spec: DestinationSpec, export: str) -> dict[str, str] | None:
    """The summary of ``export``'s newest snapshot (None: no table, or none of its)."""
    with _catalog(table, spec, "reading") as catalog:
        found = _found(catalog, table)
        if found is None:
            return None
        for snapshot in reversed(found.snapshots()):
            summary = snapshot.summary
            properties = dict(summary.additional_properties) if summary is not None else {}
            if properties.get(MERGE_EXPORT) == export:
                return {k: str(v) for k, v in properties.items() if k.startswith("rivet.")}
    return None


def current_rows(
    table: IcebergTable, spec: DestinationSpec, column: str, values: list[Any], columns: list[str]
) -> pa.Table:
    """The table's rows whose ``column`` is one of ``values``."""
    with _catalog(table, spec, "reading") as catalog:
        found = _found(catalog, table)
        if found is None:
            raise DestinationError(f"the Iceberg table {table.shown} is no longer in its catalog")
        return found.scan(row_filter=_one_of(column, values), selected_fields=tuple(columns)).to_arrow()
