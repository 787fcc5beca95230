//! One PostgreSQL table's changes as change rows ([`crate::changes`]): `__pos` is the
//! commit's position in the WAL, `__unchanged` names the TOASTed values an update left alone,
//! and the table's columns (the row after the change; for a delete, the old key or row) are
//! decoded from their binary form by the same decoders, with the same refusals, as a batch read
//! of the table.

use std::borrow::Cow;

use crate::batch::{BatchLimits, flush, make_room};
use crate::changes::{ChangeBatch, ChangeMark, TableSink, column_layout, laid_out, layout_note};
use crate::error::{Error, Result};
use crate::metadata::arrow_schema;
use crate::pg::batch::{PgBatchBuilder, PgColumn};
use crate::pg::cdc::pgoutput::{
    Lsn, Message, OldRow, PG_EPOCH_UNIX_MICROS, Relation, Tuple, Value,
};
use crate::stream::BatchSink;

/// A batch of one table's changes.
pub type PgChanges = ChangeBatch<PgBatchBuilder>;

/// A batch of the changes of a table with `columns`.
pub fn pg_changes(columns: Vec<PgColumn>, capacity: usize) -> PgChanges {
    let schema = arrow_schema(&columns);
    ChangeBatch::new(PgBatchBuilder::new(columns, capacity), &schema)
}

/// The bytes `row` would add.
fn size_of(row: &Tuple<'_>) -> usize {
    row.0
        .iter()
        .map(|v| match v {
            Value::Text(b) | Value::Binary(b) => b.len() + 4,
            Value::Null | Value::Unchanged => 1,
        })
        .sum()
}

/// Add the change `mark` of `row` to `batch` (whose table has columns `names`); the
/// values must be in binary form.
pub fn append(
    batch: &mut PgChanges,
    names: &[String],
    mark: ChangeMark<'_>,
    row: &Tuple<'_>,
) -> Result<()> {
    if row.0.len() != names.len() {
        return Err(Error::Integrity(format!(
            "the server sent a change of {} values for a table of {} columns",
            row.0.len(),
            names.len()
        )));
    }
    for (i, value) in row.0.iter().enumerate() {
        let bytes = match value {
            Value::Null | Value::Unchanged => None,
            Value::Binary(b) => Some(*b),
            Value::Text(_) => {
                return Err(Error::decode(
                    &names[i],
                    "came in text form; change capture reads values in binary form only",
                ));
            }
        };
        batch.rows().append(i, bytes)?;
    }
    batch.rows().end_row();
    let unchanged = row
        .0
        .iter()
        .zip(names)
        .filter(|(v, _)| **v == Value::Unchanged)
        .map(|(_, n)| n.as_str());
    batch.mark(mark, unchanged);
    Ok(())
}

/// `new` with each value it left unchanged taken from `old`, the whole old row.
fn with_unchanged_from<'m>(new: &Tuple<'m>, old: &Tuple<'m>) -> Tuple<'m> {
    Tuple(
        new.0
            .iter()
            .zip(&old.0)
            .map(|(n, o)| if *n == Value::Unchanged { *o } else { *n })
            .collect(),
    )
}

fn names<'c>(columns: &[(&'c str, u32)]) -> Vec<&'c str> {
    columns.iter().map(|(n, _)| *n).collect()
}

/// Where the columns of `relation` sit among the columns the export described: None when
/// they are the same. A change of columns is refused unless `follow` (on_schema_drift other
/// than fail) lets columns added or dropped since be read by name; a column whose type changed
/// is always refused (its logged bytes are another type's).
pub fn relation_layout(
    relation: &Relation,
    columns: &[PgColumn],
    type_oids: &[u32],
    follow: bool,
) -> Result<Option<Vec<Option<usize>>>> {
    let logged: Vec<(&str, u32)> = relation
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_oid))
        .collect();
    let now: Vec<(&str, u32)> = columns
        .iter()
        .map(|c| c.name.as_str())
        .zip(type_oids.iter().copied())
        .collect();
    if logged == now {
        return Ok(None);
    }
    let drift = |message: String| Error::Query {
        message,
        code: Some("rivet-schema-drift".into()),
    };
    let table = format!("{}.{}", relation.namespace, relation.name);
    if !follow {
        return Err(drift(format!(
            "the columns of {table} changed after these changes were logged: the log has ({}), the \
             table now ({}) (on_schema_drift: fail)",
            names(&logged).join(", "),
            names(&now).join(", ")
        )));
    }
    let layout = column_layout(&names(&logged), &names(&now));
    for ((name, oid), at) in now.iter().zip(&layout) {
        if let Some(i) = at
            && logged[*i].1 != *oid
        {
            return Err(Error::Query {
                message: format!(
                    "column {name} of {table} changed type after these changes were logged (type \
                     OID {} then, {oid} now): its logged values cannot be read as the new type",
                    logged[*i].1
                ),
                code: Some(crate::changes::COLUMN_RETYPED.into()),
            });
        }
    }
    Ok(Some(layout))
}

/// What one table's change stream turns into: the batch being built and where each change
/// sits in the order.
pub struct TableChanges<'a> {
    /// The table, as the Relation message names it.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The columns the export described (their order and types).
    pub columns: &'a [PgColumn],
    /// Their type OIDs.
    pub type_oids: &'a [u32],
    /// Which of them make the primary key: an update that changes one moved its row. (Under
    /// REPLICA IDENTITY FULL the Relation marks every column as the identity.)
    pub primary_key: &'a [bool],
    /// Batch bounds.
    pub limits: BatchLimits,
    /// Read changes logged before columns were added or dropped with the columns now
    /// (on_schema_drift other than fail), rather than stop.
    pub follow_column_changes: bool,
    /// Where this table's changes start: a transaction committed before is skipped (a stream
    /// read for several tables starts where the table furthest behind is).
    pub from: Lsn,
}

/// Feeds pgoutput messages of a drain into batches of one table's changes, as they come: a
/// transaction's Begin already names its commit's position and time, so nothing is held back.
pub struct ChangeSink<'a> {
    table: TableChanges<'a>,
    names: Vec<String>,
    batch: PgChanges,
    relation: Option<u32>,
    layout: Option<Vec<Option<usize>>>,
    notes: Vec<String>,
    commit: Option<(Lsn, i64)>,
    // The transaction was committed before the table's start: its changes were published.
    skipping: bool,
    // The table's Relation as it came while skipping, checked against the columns at its first change
    // read: a Relation is sent once, and what it says of published changes is no concern.
    unchecked: Option<Relation>,
    seq: u32,
    rows: u64,
}

impl<'a> ChangeSink<'a> {
    /// A sink for `table`'s changes.
    pub fn new(table: TableChanges<'a>) -> Self {
        let batch = pg_changes(table.columns.to_vec(), table.limits.max_rows.min(8192));
        ChangeSink {
            names: table.columns.iter().map(|c| c.name.clone()).collect(),
            table,
            batch,
            relation: None,
            layout: None,
            notes: Vec::new(),
            commit: None,
            skipping: false,
            unchecked: None,
            seq: 0,
            rows: 0,
        }
    }

    /// `row` in the order of the columns now (as logged when they are the same).
    fn project<'t, 'm>(&self, row: &'t Tuple<'m>) -> Cow<'t, Tuple<'m>> {
        match &self.layout {
            None => Cow::Borrowed(row),
            Some(layout) => Cow::Owned(Tuple(laid_out(layout, &row.0, Value::Unchanged))),
        }
    }

    /// Take one message of the stream.
    pub fn take(&mut self, m: &Message<'_>, sink: &BatchSink) -> Result<()> {
        let a_change = matches!(
            m,
            Message::Insert { .. }
                | Message::Update { .. }
                | Message::Delete { .. }
                | Message::Truncate { .. }
        );
        if a_change && self.skipping {
            return Ok(());
        }
        if a_change && let Some(relation) = self.unchecked.take() {
            // The first change read under a Relation that came while skipping.
            self.follow(&relation)?;
        }
        let (op, row) = match m {
            Message::Relation(r) => {
                if r.namespace == self.table.namespace && r.name == self.table.name {
                    self.relation = Some(r.oid);
                    if self.skipping {
                        self.unchecked = Some(r.clone());
                    } else {
                        self.unchecked = None;
                        self.follow(r)?;
                    }
                }
                return Ok(());
            }
            Message::Begin {
                final_lsn,
                committed_at,
                ..
            } => {
                self.commit = Some((*final_lsn, *committed_at));
                self.skipping = *final_lsn < self.table.from;
                self.seq = 0;
                return Ok(());
            }
            Message::Truncate { relations, .. }
                if self.relation.is_some_and(|r| relations.contains(&r)) =>
            {
                return Err(Error::Query {
                    message: format!(
                        "{}.{} was truncated: a change stream cannot say which rows went; export it \
                         whole again",
                        self.table.namespace, self.table.name
                    ),
                    code: None,
                });
            }
            Message::Insert { relation, new } if Some(*relation) == self.relation => {
                ("insert", self.project(new))
            }
            Message::Update { relation, old, new } if Some(*relation) == self.relation => {
                let new = self.project(new);
                let old = old.as_ref().map(|o| match o {
                    OldRow::Key(key) => (true, self.project(key)),
                    OldRow::Full(row) => (false, self.project(row)),
                });
                // A row whose key changed leaves its old key: a merge by key must delete it.
                let moved = match &old {
                    Some((true, key)) => Some(key),
                    Some((false, row)) if self.key_changed(row, &new) => Some(row),
                    _ => None,
                };
                if let Some(old) = moved {
                    self.append("delete", old, sink)?;
                }
                if let Some((false, before)) = &old {
                    // The old row is whole under REPLICA IDENTITY FULL: it holds the TOASTed
                    // values the update left alone, so the new row is written whole too.
                    let whole = with_unchanged_from(&new, before);
                    return self.append("update", &whole, sink);
                }
                ("update", new)
            }
            Message::Delete { relation, old } if Some(*relation) == self.relation => {
                let (OldRow::Key(row) | OldRow::Full(row)) = old;
                ("delete", self.project(row))
            }
            _ => return Ok(()),
        };
        self.append(op, &row, sink)
    }

    /// Read the table's changes as `relation` logged them from here on (or stop, see
    /// [`relation_layout`]); a change of columns is noted once.
    fn follow(&mut self, relation: &Relation) -> Result<()> {
        let t = &self.table;
        self.layout = relation_layout(relation, t.columns, t.type_oids, t.follow_column_changes)?;
        if self.layout.is_some() {
            let logged: Vec<&str> = relation.columns.iter().map(|c| c.name.as_str()).collect();
            let now: Vec<&str> = self.names.iter().map(String::as_str).collect();
            let table = format!("{}.{}", relation.namespace, relation.name);
            let note = layout_note(&table, &logged, &now);
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
        }
        Ok(())
    }

    /// Whether an update under REPLICA IDENTITY FULL moved its row to another key.
    fn key_changed(&self, old: &Tuple<'_>, new: &Tuple<'_>) -> bool {
        self.table
            .primary_key
            .iter()
            .zip(old.0.iter().zip(&new.0))
            .any(|(key, (o, n))| *key && *n != Value::Unchanged && o != n)
    }

    fn append(&mut self, op: &str, row: &Tuple<'_>, sink: &BatchSink) -> Result<()> {
        let (pos, committed_at) = self.commit.ok_or_else(|| {
            Error::ConnectionLost("a change arrived outside a transaction".into())
        })?;
        make_room(&mut self.batch, size_of(row), &self.table.limits, sink)?;
        let mark = ChangeMark {
            op,
            pos: pos.0,
            seq: self.seq,
            committed_at: committed_at.saturating_add(PG_EPOCH_UNIX_MICROS),
        };
        append(&mut self.batch, &self.names, mark, row)?;
        self.seq = self.seq.saturating_add(1);
        self.rows += 1;
        Ok(())
    }
}

impl TableSink for ChangeSink<'_> {
    fn finish(&mut self, sink: &BatchSink) -> Result<()> {
        flush(&mut self.batch, sink)
    }

    fn rows(&self) -> u64 {
        self.rows
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, UInt64Type};

    use super::*;
    use crate::batch::RowBatch;
    use crate::pg::types::PgKind;

    fn mark(pos: u64) -> ChangeMark<'static> {
        ChangeMark {
            op: "update",
            pos,
            seq: 0,
            committed_at: 0,
        }
    }

    fn columns() -> Vec<PgColumn> {
        [("id", PgKind::Int4), ("note", PgKind::Text)]
            .into_iter()
            .map(|(name, kind)| PgColumn {
                name: name.into(),
                kind,
                source_type: "t".into(),
                logical: None,
            })
            .collect()
    }

    #[test]
    fn a_change_row_names_what_it_did_not_send() {
        let mut batch = pg_changes(columns(), 8);
        let names = ["id".to_string(), "note".to_string()];
        let one = 1i32.to_be_bytes();
        let row = Tuple(vec![Value::Binary(&one), Value::Unchanged]);
        append(&mut batch, &names, mark(77), &row).expect("append");
        let b = batch.finish().expect("batch");
        assert_eq!(b.column(1).as_primitive::<UInt64Type>().value(0), 77);
        assert_eq!(b.column(5).as_primitive::<Int32Type>().value(0), 1);
        assert!(b.column(6).is_null(0));
        let unchanged = b.column(4).as_list::<i32>().value(0);
        assert_eq!(unchanged.as_string::<i32>().value(0), "note");
    }

    #[test]
    fn text_values_and_rows_of_another_width_are_refused() {
        let mut batch = pg_changes(columns(), 8);
        let names = ["id".to_string(), "note".to_string()];
        let text = Tuple(vec![Value::Text(b"1"), Value::Null]);
        let err = append(&mut batch, &names, mark(1), &text).expect_err("text");
        assert!(err.to_string().contains("id"), "{err}");
        let short = Tuple(vec![Value::Null]);
        assert!(append(&mut batch, &names, mark(1), &short).is_err());
    }

    fn relation(columns: &[(&str, u32)]) -> Relation {
        Relation {
            oid: 7,
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: crate::pg::cdc::pgoutput::ReplicaIdentity::Default,
            columns: columns
                .iter()
                .map(
                    |(name, type_oid)| crate::pg::cdc::pgoutput::RelationColumn {
                        name: (*name).into(),
                        type_oid: *type_oid,
                        typmod: -1,
                        key: *name == "id",
                    },
                )
                .collect(),
        }
    }

    /// A log read for several tables starts where the table furthest behind is: a table skips
    /// the transactions it published, and the columns a Relation sent then says they had.
    #[test]
    fn a_skipped_transaction_is_not_read_and_its_columns_are_no_concern() {
        use crate::stream::BatchStream;
        use crate::{EndOfData, batch::BatchLimits};

        let cols = columns();
        let schema = crate::changes::change_schema(&arrow_schema(&cols));
        let mut stream = BatchStream::spawn(schema, 1, move |sink| {
            let table = TableChanges {
                namespace: "public",
                name: "t",
                columns: &cols,
                type_oids: &[23, 25],
                primary_key: &[true, false],
                limits: BatchLimits::new(16, 1 << 20)?,
                follow_column_changes: false,
                from: Lsn(100),
            };
            let mut changes = ChangeSink::new(table);
            let begin = |at: u64| Message::Begin {
                final_lsn: Lsn(at),
                committed_at: 0,
                xid: 1,
            };
            let (one, two) = (1i32.to_be_bytes(), 2i32.to_be_bytes());
            // Published already, and logged before a column was added: not readable under fail.
            changes.take(&begin(50), sink)?;
            changes.take(&Message::Relation(relation(&[("id", 23)])), sink)?;
            let old = Tuple(vec![Value::Binary(&one)]);
            changes.take(
                &Message::Insert {
                    relation: 7,
                    new: old,
                },
                sink,
            )?;
            // Read: logged under the columns now.
            changes.take(&begin(150), sink)?;
            changes.take(
                &Message::Relation(relation(&[("id", 23), ("note", 25)])),
                sink,
            )?;
            let new = Tuple(vec![Value::Binary(&two), Value::Binary(b"x")]);
            changes.take(&Message::Insert { relation: 7, new }, sink)?;
            changes.finish(sink)?;
            assert!(changes.notes().is_empty(), "{:?}", changes.notes());
            Ok(EndOfData {
                server_rows: changes.rows(),
                expected_rows: None,
            })
        });
        let batch = stream.next_blocking().expect("read").expect("a batch");
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.column(5).as_primitive::<Int32Type>().value(0), 2);
        assert!(stream.next_blocking().expect("the end").is_none());
    }
}
