"""``write: merge``: the Delta table holds the source table as it is now.

Two ways in. An incremental run upserts the rows its cursor selected, by key, in one
commit, before its state commit moves the cursor (a run killed in between upserts the same
rows again: the table ends the same). A change capture folds and merges its changes:

the initial snapshot replaces the table in one commit. Each run then reads its changes in
chunks of whole transactions (``cdc.commit_every_rows``), folds each chunk to each key's
latest change (a delete included), merges it by key in one commit whose metadata names
the positions it covers, and stores the chunk's end in a state commit. A run killed between
the two leaves the table ahead of the state: the next run (or the next attempt) finds that
commit in the table's history, takes the position from it, and does not merge those
changes again.

PostgreSQL does not log a TOASTed value an update left alone (``__unchanged``): the fold
takes it from the row's earlier change in the run, else from the table, so a merged row
is always whole. When neither holds it (an update that moved the row to a new key under
the default replica identity) the run fails rather than write a NULL that is not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from rivet.core import failpoints
from rivet.errors import ConfigError, DataError, SchemaDriftError
from rivet.execution.commit import commit_state
from rivet.execution.integrity import check_read
from rivet.output.tables.base import MERGE_EXPORT, MERGE_FROM, MERGE_OP, MERGE_POSITION, MERGE_RUN
from rivet.state.changes import STREAMING
from rivet.storage import staging
from rivet.storage.destinations import open_destination

if TYPE_CHECKING:
    from rivet._native import BatchReader
    from rivet.execution.changes import ChangeRun
    from rivet.execution.results import ExportResult
    from rivet.output import StagedPart
    from rivet.output.tables import TableCheck
    from rivet.output.tables.base import TableFormat
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore
    from rivet.state.lease import ExportLease

log = logging.getLogger("rivet")

# Change columns a merge reads; the rest of the change columns never reach the table.
OP, UNCHANGED = MERGE_OP, "__unchanged"


def _table(run: ChangeRun) -> TableFormat:
    fmt = run.plan.lake_table
    assert fmt is not None, "write: merge is checked to have a table format"
    return fmt


def _metadata(run: ChangeRun, start: str, end: str) -> dict[str, str]:
    return {MERGE_EXPORT: run.plan.name, MERGE_RUN: run.result.run_id, MERGE_FROM: start, MERGE_POSITION: end}


def merge_snapshot(run: ChangeRun) -> str:
    """Anchor with a snapshot, make it the whole table, and store the position; the position."""
    plan = run.plan
    snapshot = run.feed.anchor_with_snapshot(plan.overrides, plan.tuning)
    failpoints.hit("after_anchor")
    try:
        reader = snapshot.read()
        counted = _Counted(reader)
        _table(run).replace_rows(plan.destination, counted.stream(), _metadata(run, "", snapshot.position))
        check_read(reader, counted.rows, f"export {plan.name}")
    finally:
        snapshot.close()
    run.result.merged_rows += counted.rows
    failpoints.hit("before_cursor")
    commit_state(run.state, run.lease, run.result.run_id, lambda: run.set_position(STREAMING, snapshot.position))
    log.info("export %s: snapshot of %d row(s) at %s is the table", plan.name, counted.rows, snapshot.position)
    return snapshot.position


def resume_from_table(run: ChangeRun, stored: str) -> str:
    """The position to read from: ``stored``, or where a run killed after its table commit got to."""
    last = _table(run).last_merge(run.plan.destination, run.plan.name)
    if last is None or last.get(MERGE_FROM) != stored or last.get(MERGE_POSITION) in (None, stored):
        return stored
    position, earlier = last[MERGE_POSITION], last[MERGE_RUN]
    log.info("export %s: run %s merged the changes to %s before it was stopped; going on from there",
             run.plan.name, earlier, position)  # fmt: skip
    commit_state(run.state, run.lease, earlier, lambda: run.set_position(STREAMING, position))
    return position


def merge_changes(run: ChangeRun, keys: tuple[str, ...], changes: pa.Table, start: str, end: str) -> None:
    """Merge the run's ``changes`` (from ``start`` to ``end``) into the table by ``keys``, then store ``end``."""
    plan = run.plan
    columns = [n for n in changes.schema.names if not n.startswith("__")]
    if changes.num_rows:
        _refuse_other_columns(run, columns)
    latest = _latest(changes, keys)
    if latest.num_rows and UNCHANGED in latest.schema.names:
        latest = _whole(run, changes, latest, keys)
    if latest.num_rows:
        rows = latest.select([OP, *columns])
        _table(run).merge_rows(plan.destination, rows, keys, columns, _metadata(run, start, end))
        run.result.merged_rows += latest.num_rows
    failpoints.hit("before_cursor")
    commit_state(run.state, run.lease, run.result.run_id, lambda: run.set_position(STREAMING, end))
    log.info("export %s: %d change(s) to %d key(s) merged, from %s to %s",
             plan.name, changes.num_rows, latest.num_rows, start, end)  # fmt: skip


def _refuse_other_columns(run: ChangeRun, columns: list[str]) -> None:
    """Changes whose columns are not the merged table's stop the run: nothing merged, the position kept."""
    table = _table(run).scan(run.plan.destination, None).collect_schema().names()
    if sorted(table) != sorted(columns):
        raise SchemaDriftError(
            f"export '{run.plan.name}': the changes have columns ({', '.join(columns)}) and the merged table "
            f"({', '.join(table)}); write: merge does not follow a change of columns. Nothing was merged and the "
            f"position is kept: start over with `{run.plan.command('cdc drop')}`, then a run with "
            "cdc.initial: snapshot makes the table anew with the new columns"
        )


def upsert_staged(
    plan: ExportPlan,
    state: StateStore,
    result: ExportResult,
    staged: list[StagedPart],
    lease: ExportLease | None,
    table_check: TableCheck | None,
    on_commit: Callable[[], None],
) -> None:
    """Upsert an incremental run's staged rows into the table by key, then make the run count."""
    import pyarrow.parquet as pq

    fmt = plan.lake_table
    assert fmt is not None and plan.merge_keys is not None
    try:
        read = [pq.read_table(part.path) for part in staged]
    finally:
        for part in staged:
            staging.remove(part.path)
    assert result.schema is not None
    rows = pa.concat_tables(read) if read else result.schema.empty_table()
    columns = rows.schema.names
    keys = keys_of(plan, columns)
    latest = _latest(rows, keys)
    if table_check is not None:
        table_check.wait(latest.schema)  # and the catalog is made once, by the check, before it is written
    metadata = {MERGE_EXPORT: plan.name, MERGE_RUN: result.run_id, MERGE_FROM: "", MERGE_POSITION: ""}
    if fmt.listed_parts(open_destination(plan.destination)) is None:
        fmt.replace_rows(
            plan.destination, pa.RecordBatchReader.from_batches(latest.schema, latest.to_batches()), metadata
        )
    elif latest.num_rows:
        with_op = latest.append_column(OP, pa.array(["upsert"] * latest.num_rows, pa.string()))
        fmt.merge_rows(plan.destination, with_op, keys, columns, metadata)
    result.merged_rows = latest.num_rows
    if not latest.num_rows:
        result.status = "empty"
    failpoints.hit("before_cursor")
    commit_state(state, lease, result.run_id, on_commit)


def transaction_chunks(reader: BatchReader, export: str, every: int) -> Iterator[tuple[pa.Table, int | None]]:
    """The change rows of ``reader`` in tables of about ``every`` rows, each ending with a whole transaction.

    Each comes with the ``__pos`` of the transaction after it, the last with None (its end is
    where the read ended). A transaction is never split: one larger than ``every`` is one table.
    The rows are checked against what the reader says it read.
    """
    schema = pa.schema(reader)
    pending: list[pa.RecordBatch] = []
    held = total = 0
    try:
        while (got := reader.next_batch()) is not None:
            batch = pa.record_batch(got)
            pending.append(batch)
            held += batch.num_rows
            total += batch.num_rows
            if held < every:
                continue
            table = pa.Table.from_batches(pending, schema)
            while table.num_rows >= every:
                # The first row of the first transaction after row ``every``: the cut.
                later = pc.greater(table["__pos"], table["__pos"][every - 1])
                cut = pc.index(later, True).as_py()
                if cut < 0:
                    break  # the transaction goes on, maybe into the next batch: never split
                yield table.slice(0, cut), table["__pos"][cut].as_py()
                table = table.slice(cut)
            pending, held = table.to_batches(), table.num_rows
        check_read(reader, total, f"export {export}")
        yield pa.Table.from_batches(pending, schema), None
    finally:
        reader.close()


def merge_keys(run: ChangeRun) -> tuple[str, ...]:
    """A change capture's merge keys, found before it anchors.

    The table format's checks are awaited here too: they open its catalog first, once.
    """
    plan = run.plan
    schema = plan.source.describe(plan.query, plan.overrides)
    keys = keys_of(plan, schema.names)
    if run.table_check is not None:
        run.table_check.wait(schema)
    return keys


def keys_of(plan: ExportPlan, columns: list[str]) -> tuple[str, ...]:
    """The columns rows are merged by: ``merge_keys``, else the table's primary key; refused when missing."""
    assert plan.merge_keys is not None
    what = plan.table or "the query"
    keys = plan.merge_keys or (tuple(plan.server.primary_key(plan.table)) if plan.table else ())
    if not keys:
        raise ConfigError(f"export '{plan.name}': {what} has no primary key: name the columns in merge_keys")
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ConfigError(f"export '{plan.name}': merge_keys {', '.join(missing)} are not columns of {what}")
    return keys


def _latest(changes: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Each key's last change (``changes`` are in commit order)."""
    if not changes.num_rows:
        return changes
    numbered = changes.select(list(keys)).append_column("__row", pa.array(range(changes.num_rows), pa.int64()))
    last = numbered.group_by(list(keys), use_threads=False).aggregate([("__row", "max")])
    return changes.take(pc.take(last["__row_max"], pc.sort_indices(last["__row_max"])))


def _whole(run: ChangeRun, changes: pa.Table, latest: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """``latest`` with every value a change left unlogged filled in: from the run, else from the table."""
    gaps = latest[UNCHANGED].to_pylist()
    if not any(gaps):
        return latest
    history = _History(changes, keys)
    needed = {c for gap in gaps for c in gap}
    filled = {c: latest[c].to_pylist() for c in needed}
    missing: dict[tuple[Any, ...], list[tuple[int, str]]] = {}
    row_of = history.row_of_latest(latest, keys)
    for i, gap in enumerate(gaps):
        for column in gap:
            found, origin = history.value(row_of[i], column)
            if found:
                filled[column][i] = origin
            else:
                missing.setdefault(origin, []).append((i, column))
    if missing:
        table = _current(run, list(missing), keys, sorted(needed))
        for key, places in missing.items():
            if key not in table:
                raise DataError(
                    f"export '{run.plan.name}': a change of key {key} left {places[0][1]} unlogged (a TOASTed value, "
                    "on a row whose key moved?), and neither this run nor the table holds it; set REPLICA IDENTITY "
                    "FULL on the source table, then start over with `rivet cdc drop` and initial: snapshot"
                )
            for i, column in places:
                filled[column][i] = table[key][column]
    for column, values in filled.items():
        latest = latest.set_column(latest.schema.get_field_index(column), column, pa.array(values, latest[column].type))
    return latest


class _History:
    """The run's changes, as Python values, to follow a row back through its changes."""

    def __init__(self, changes: pa.Table, keys: tuple[str, ...]) -> None:
        self.changes = changes
        self.ops = changes[OP].to_pylist()
        self.keys = list(zip(*(changes[k].to_pylist() for k in keys), strict=True))
        self.unchanged = changes[UNCHANGED].to_pylist()
        self._columns: dict[str, list[Any]] = {}

    def row_of_latest(self, latest: pa.Table, keys: tuple[str, ...]) -> list[int]:
        """The index in the run of each row of ``latest``."""
        last = {key: i for i, key in enumerate(self.keys)}
        return [last[key] for key in zip(*(latest[k].to_pylist() for k in keys), strict=True)]

    def _column(self, name: str) -> list[Any]:
        if name not in self._columns:
            self._columns[name] = self.changes[name].to_pylist()
        return self._columns[name]

    def value(self, i: int, column: str) -> tuple[bool, Any]:
        """``(True, value)`` of ``column`` after change ``i``; else ``(False, key)``, the key whose row holds it.

        The row is followed back through its earlier changes in the run to the change that
        logged the value, or to the table as it was before the run.
        """
        key = self.keys[i]
        while column in self.unchanged[i]:
            earlier = next((j for j in range(i - 1, -1, -1) if self.keys[j] == key), None)
            if earlier is None or self.ops[earlier] == "delete":
                return False, key
            i = earlier
        return True, self._column(column)[i]


def _current(
    run: ChangeRun, keys: list[tuple[Any, ...]], key_columns: tuple[str, ...], columns: list[str]
) -> dict[Any, Any]:
    """The table's rows of ``keys`` now, by key."""
    first = key_columns[0]
    rows = _table(run).current_rows(run.plan.destination, first, sorted({k[0] for k in keys}), [*key_columns, *columns])
    found = {}
    for row in rows.to_pylist():
        found[tuple(row[k] for k in key_columns)] = row
    return found


class _Counted:
    """A reader's batches as an Arrow stream, counted on the way."""

    def __init__(self, reader: BatchReader) -> None:
        self.reader = reader
        self.rows = 0

    def stream(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(pa.schema(self.reader), self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while (batch := self.reader.next_batch()) is not None:
            b = pa.record_batch(batch)
            self.rows += b.num_rows
            yield b
