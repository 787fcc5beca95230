"""``write: merge`` into a Delta table: the table is the source's rows as they are now.

A run's rows (for change capture, each key's latest change, deletes included) are merged
by key in one Delta commit, which carries the run's source positions in its commit
metadata (``rivet.export``, ``rivet.run_id``, ``rivet.from``, ``rivet.position``): a run
killed after that commit and before its state commit is recognised by the next run, which
moves on from the position the table already holds instead of merging again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rivet.errors import DestinationError
from rivet.output.tables.base import MERGE_EXPORT, MERGE_OP, reason
from rivet.output.tables.delta import storage_options, table_uri

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.storage.destinations import DestinationSpec

# How far back the table's history is searched for the export's last commit.
HISTORY_DEPTH = 50


def _quoted(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def _commit(metadata: dict[str, str]) -> Any:
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata=metadata)


def replace_rows(spec: DestinationSpec, rows: pa.RecordBatchReader, metadata: dict[str, str]) -> None:
    """Make the table hold exactly ``rows`` (a snapshot), in one commit."""
    from deltalake import write_deltalake

    try:
        write_deltalake(
            table_uri(spec),
            rows,
            mode="overwrite",
            schema_mode="overwrite",
            storage_options=storage_options(spec),
            commit_properties=_commit(metadata),
        )
    except Exception as e:
        raise DestinationError(f"destination {spec.shown}: writing the Delta table failed: {reason(e)}") from e


def merge_rows(
    spec: DestinationSpec, rows: pa.Table, keys: tuple[str, ...], columns: list[str], metadata: dict[str, str]
) -> None:
    """Merge ``rows`` by ``keys`` in one commit (``__op`` delete deletes the key, others write ``columns``)."""
    from deltalake import DeltaTable

    table = DeltaTable(table_uri(spec), storage_options=storage_options(spec))
    values = {c: f"s.{_quoted(c)}" for c in columns}
    on = " AND ".join(f"t.{_quoted(k)} = s.{_quoted(k)}" for k in keys)
    try:
        (
            table.merge(rows, on, source_alias="s", target_alias="t", commit_properties=_commit(metadata))
            .when_matched_delete(predicate=f"s.{MERGE_OP} = 'delete'")
            .when_matched_update(updates=values, predicate=f"s.{MERGE_OP} <> 'delete'")
            .when_not_matched_insert(updates=values, predicate=f"s.{MERGE_OP} <> 'delete'")
            .execute()
        )
    except Exception as e:
        raise DestinationError(f"destination {spec.shown}: merging into the Delta table failed: {reason(e)}") from e


def last_merge(spec: DestinationSpec, export: str) -> dict[str, str] | None:
    """The commit metadata of ``export``'s newest commit to the table (None: no table, or none of its)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(table_uri(spec), storage_options=storage_options(spec))
    except TableNotFoundError:
        return None
    for commit in table.history(HISTORY_DEPTH):
        if commit.get(MERGE_EXPORT) == export:
            return {k: str(v) for k, v in commit.items() if k.startswith("rivet.")}
    return None


def current_rows(spec: DestinationSpec, column: str, values: list[Any], columns: list[str]) -> pa.Table:
    """The table's rows whose ``column`` is one of ``values`` (only ``columns`` of them)."""
    from deltalake import DeltaTable

    table = DeltaTable(table_uri(spec), storage_options=storage_options(spec))
    return table.to_pyarrow_table(columns=columns, filters=[(column, "in", values)])
