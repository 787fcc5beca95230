//! Change rows, the same for every source's change capture: `__op`, `__pos`, `__seq`,
//! `__committed_at` and `__unchanged`, then the table's columns.
//!
//! `(__pos, __seq)` is the total order: `__pos` the transaction's place in the source's log
//! (a plain integer), `__seq` the change's place in its transaction. `__unchanged` names the
//! columns a change did not carry: they are NULL in the row, and never mean NULL.

use std::sync::Arc;

use arrow_array::builder::{
    ListBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::batch::{Fill, RowBatch};
use crate::error::{Error, Result};
use crate::stream::{BatchSink, EndOfData};

/// The columns every change row starts with.
pub fn change_fields() -> Vec<Field> {
    vec![
        Field::new("__op", DataType::Utf8, false),
        Field::new("__pos", DataType::UInt64, false),
        Field::new("__seq", DataType::UInt32, false),
        Field::new(
            "__committed_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "__unchanged",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
    ]
}

/// The schema of the changes of a table whose rows have `table`'s schema.
pub fn change_schema(table: &SchemaRef) -> SchemaRef {
    let mut fields = change_fields();
    fields.extend(table.fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
}

/// Where one change sits and what it did.
#[derive(Debug, Clone, Copy)]
pub struct ChangeMark<'a> {
    /// `insert`, `update` or `delete`.
    pub op: &'a str,
    /// The transaction's place in the log.
    pub pos: u64,
    /// The change's place in its transaction.
    pub seq: u32,
    /// When its transaction committed (Unix microseconds).
    pub committed_at: i64,
}

/// Changes accumulated into a batch: the table's rows in `table` (a source's batch builder),
/// and beside each its change columns.
pub struct ChangeBatch<T> {
    schema: SchemaRef,
    table: T,
    op: StringBuilder,
    pos: UInt64Builder,
    seq: UInt32Builder,
    at: TimestampMicrosecondBuilder,
    unchanged: ListBuilder<StringBuilder>,
}

impl<T: RowBatch> ChangeBatch<T> {
    /// Changes whose rows `table` builds, with `table_schema`.
    pub fn new(table: T, table_schema: &SchemaRef) -> Self {
        ChangeBatch {
            schema: change_schema(table_schema),
            table,
            op: StringBuilder::new(),
            pos: UInt64Builder::new(),
            seq: UInt32Builder::new(),
            at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            unchanged: ListBuilder::new(StringBuilder::new()),
        }
    }

    /// The batches' schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The table's builder, to add a change's row to.
    pub fn rows(&mut self) -> &mut T {
        &mut self.table
    }

    /// Record the change whose row was just added, and the columns it did not carry.
    pub fn mark<'n>(&mut self, mark: ChangeMark<'_>, unchanged: impl IntoIterator<Item = &'n str>) {
        self.op.append_value(mark.op);
        self.pos.append_value(mark.pos);
        self.seq.append_value(mark.seq);
        self.at.append_value(mark.committed_at);
        for name in unchanged {
            self.unchanged.values().append_value(name);
        }
        self.unchanged.append(true);
    }
}

impl<T: RowBatch> RowBatch for ChangeBatch<T> {
    fn fill(&self) -> Fill {
        self.table.fill()
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let table = self.table.finish()?;
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(self.op.finish()),
            Arc::new(self.pos.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.at.finish()),
            Arc::new(self.unchanged.finish()),
        ];
        arrays.extend(table.columns().iter().cloned());
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| Error::Io(format!("assembling a batch of changes failed: {e}")))
    }
}

/// The code of the error for a column whose type changed under changes not read yet.
pub const COLUMN_RETYPED: &str = "rivet-column-retyped";

/// Where each column read now sits among the columns a change was logged with: for each
/// column of `now`, its index in `logged` (None: the change did not carry it, as when the
/// column was added after the change). Matched by name, so a column added in the middle or
/// one dropped since is placed right.
pub fn column_layout(logged: &[&str], now: &[&str]) -> Vec<Option<usize>> {
    now.iter()
        .map(|n| logged.iter().position(|l| l == n))
        .collect()
}

/// How the columns of changes logged as `logged` were read into `now`, for the run to say.
pub fn layout_note(table: &str, logged: &[&str], now: &[&str]) -> String {
    let absent: Vec<&str> = now
        .iter()
        .copied()
        .filter(|n| !logged.contains(n))
        .collect();
    let gone: Vec<&str> = logged
        .iter()
        .copied()
        .filter(|l| !now.contains(l))
        .collect();
    let mut note = format!(
        "changes of {table} logged with columns ({}) were read with its columns now ({})",
        logged.join(", "),
        now.join(", ")
    );
    if !absent.is_empty() {
        note.push_str(&format!(
            "; {} not in them (NULL, and named in __unchanged)",
            absent.join(", ")
        ));
    }
    if !gone.is_empty() {
        note.push_str(&format!(
            "; {} no longer in the table (left out)",
            gone.join(", ")
        ));
    }
    note
}

/// `values` (in logged order) placed in the order of `layout`, `missing` where a column was
/// not logged.
pub fn laid_out<V: Clone>(layout: &[Option<usize>], values: &[V], missing: V) -> Vec<V> {
    layout
        .iter()
        .map(|at| {
            at.and_then(|i| values.get(i).cloned())
                .unwrap_or_else(|| missing.clone())
        })
        .collect()
}

/// What turns one table's part of a log read into change rows (a PostgreSQL or a binlog sink).
pub trait TableSink {
    /// Hand over the rows still held.
    fn finish(&mut self, sink: &BatchSink) -> Result<()>;
    /// Changes handed over so far.
    fn rows(&self) -> u64;
    /// How changes logged under other columns were read (one note per change of columns).
    fn notes(&self) -> &[String];
}

/// End a log read: each table's rows still held handed over to its stream; each stream's
/// account, and every table's notes on changed columns.
pub fn finish_tables<S: TableSink>(
    tables: &mut [S],
    sinks: &[BatchSink],
) -> Result<(Vec<EndOfData>, Vec<String>)> {
    let mut ends = Vec::with_capacity(tables.len());
    let mut notes = Vec::new();
    for (table, sink) in tables.iter_mut().zip(sinks) {
        table.finish(sink)?;
        notes.extend_from_slice(table.notes());
        ends.push(EndOfData {
            server_rows: table.rows(),
            expected_rows: None,
        });
    }
    Ok((ends, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_placed_by_name_whatever_was_added_or_dropped() {
        let layout = column_layout(&["id", "gone", "note"], &["id", "added", "note"]);
        assert_eq!(layout, vec![Some(0), None, Some(2)]);
        assert_eq!(laid_out(&layout, &[1, 2, 3], 0), vec![1, 0, 3]);
        let note = layout_note("t", &["id", "gone", "note"], &["id", "added", "note"]);
        assert!(note.contains("added not in them"), "{note}");
        assert!(note.contains("gone no longer in the table"), "{note}");
    }
}
