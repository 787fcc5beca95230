//! One MySQL/MariaDB table's changes as change rows ([`crate::changes`]): `__pos` is the
//! transaction's place in the binary log (its file's number, then the offset of its first
//! event), and each row is decoded by the batch read's own decoders ([`super::row`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::batch::{BatchLimits, flush, make_room};
use crate::changes::{ChangeBatch, ChangeMark, TableSink, column_layout, laid_out, layout_note};
use crate::error::{Error, Result};
use crate::metadata::arrow_schema;
use crate::mysql::cdc::binlog::{
    Event, Image, TableMap, Value, each_row, kind, query, table_map, truncates,
};
use crate::mysql::cdc::row::protocol_row;
use crate::mysql::decode::MyBatchBuilder;
use crate::mysql::types::{MyColumn, MyKind};
use crate::stream::BatchSink;

/// MySQL's GTID event (MariaDB's is [`kind::MARIADB_GTID`]).
const MYSQL_GTID: u8 = 33;
/// What MySQL writes instead before each transaction when `gtid_mode` is OFF (its default).
const MYSQL_ANONYMOUS_GTID: u8 = 34;

/// A batch of one table's changes.
pub type MyChanges = ChangeBatch<MyBatchBuilder>;

/// The table whose changes are wanted, as the export described it.
pub struct MyTable<'a> {
    /// Its database.
    pub schema: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its columns, described as a read of it would be.
    pub columns: &'a [MyColumn],
    /// Each ENUM or SET column's members.
    pub members: &'a [Option<Vec<String>>],
    /// Which columns make its primary key.
    pub key: &'a [bool],
    /// The binary log type codes each column is logged as now (see [`logged_as`]; None:
    /// not checked): a change logged as another type stops the stream.
    pub logged_types: &'a [Option<&'static [u8]>],
    /// Batch bounds.
    pub limits: BatchLimits,
    /// Read changes logged before columns were added or dropped with the columns now
    /// (on_schema_drift other than fail), rather than stop.
    pub follow_column_changes: bool,
    /// Where this table's changes start, as [`log_position`] gives it: a transaction that
    /// starts before is skipped (a log read for several tables starts where the table furthest
    /// behind is).
    pub from: u64,
}

/// A place in the binary log as one number that sorts as the log does: the file's number,
/// then the offset in it.
pub fn log_position(file: &str, offset: u32) -> u64 {
    (file_number(file) << 32) | u64::from(offset)
}

/// The binary log type codes a column of `data_type` (information_schema's `DATA_TYPE`) is
/// logged as; None for a type not checked.
pub fn logged_as(data_type: &str) -> Option<&'static [u8]> {
    use crate::mysql::types::code::*;
    Some(match data_type.to_ascii_lowercase().as_str() {
        "tinyint" | "bool" | "boolean" => &[TINY],
        "smallint" => &[SHORT],
        "mediumint" => &[INT24],
        "int" | "integer" => &[LONG],
        "bigint" => &[LONGLONG],
        "float" => &[FLOAT],
        "double" | "real" => &[DOUBLE],
        "decimal" | "numeric" => &[NEWDECIMAL, DECIMAL],
        "date" => &[DATE, NEWDATE],
        "time" => &[TIME2, TIME],
        "datetime" => &[DATETIME2, DATETIME],
        "timestamp" => &[TIMESTAMP2, TIMESTAMP],
        "year" => &[YEAR],
        "bit" => &[BIT],
        "char" | "binary" | "enum" | "set" => &[STRING, ENUM, SET],
        "varchar" | "varbinary" => &[VARCHAR, VAR_STRING],
        "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob"
        | "longblob" => &[BLOB, TINY_BLOB, MEDIUM_BLOB, LONG_BLOB],
        // MySQL logs JSON as its own type; MariaDB's JSON is a LONGTEXT.
        "json" => &[JSON, BLOB],
        _ => return None,
    })
}

/// The log file's number (`bin.000042` is 42).
fn file_number(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `image` in the order of the columns now (as logged when `layout` is None).
fn projected<'t, 'a>(
    layout: &Option<Vec<Option<usize>>>,
    image: Option<&'t Image<'a>>,
) -> Option<Cow<'t, Image<'a>>> {
    let image = image?;
    Some(match layout {
        None => Cow::Borrowed(image),
        Some(l) => Cow::Owned(laid_out(l, image, None)),
    })
}

/// Feeds a dump's events into batches of one table's changes.
pub struct MyChangeSink<'a> {
    table: MyTable<'a>,
    batch: MyChanges,
    maps: HashMap<u64, Arc<TableMap>>,
    layouts: HashMap<u64, Option<Vec<Option<usize>>>>,
    notes: Vec<String>,
    file: u64,
    transaction: Option<(u64, i64)>,
    // The transaction starts before the table's start: its changes were published.
    skipping: bool,
    seq: u32,
    rows: u64,
    payload: Vec<u8>,
}

impl<'a> MyChangeSink<'a> {
    /// A sink for `table`'s changes, in the log file named `file`.
    pub fn new(table: MyTable<'a>, file: &str) -> Self {
        let schema = arrow_schema(table.columns);
        // BIT columns come as bytes, as the protocol sends them (BIT(1) is read as a bool).
        let bits = table
            .columns
            .iter()
            .map(|c| c.kind == MyKind::Bits || c.source_type.starts_with("bit"))
            .collect();
        let capacity = table.limits.max_rows.min(8192);
        let builder = MyBatchBuilder::new(schema.clone(), table.columns.to_vec(), bits, capacity);
        MyChangeSink {
            batch: ChangeBatch::new(builder, &schema),
            table,
            maps: HashMap::new(),
            layouts: HashMap::new(),
            notes: Vec::new(),
            file: file_number(file),
            transaction: None,
            skipping: false,
            seq: 0,
            rows: 0,
            payload: Vec::new(),
        }
    }

    /// Take one event of the dump.
    pub fn take(&mut self, e: &Event<'_>, sink: &BatchSink) -> Result<()> {
        let h = e.header;
        match h.kind {
            kind::ROTATE => {
                // The position (8 bytes), then the next file's name.
                let name = e
                    .body
                    .get(8..)
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                self.file = file_number(&name);
            }
            kind::MARIADB_GTID | MYSQL_GTID | MYSQL_ANONYMOUS_GTID => {
                let start = (self.file << 32) | u64::from(h.next_position.saturating_sub(h.size));
                self.transaction = Some((start, i64::from(h.timestamp) * 1_000_000));
                self.skipping = start < self.table.from;
                self.seq = 0;
            }
            kind::QUERY if self.skipping => {}
            kind::QUERY => {
                let (default, sql) = query(e.body)?;
                if truncates(&sql, &default, self.table.schema, self.table.name) {
                    return Err(Error::Query {
                        message: format!(
                            "{}.{} was truncated: the binary log logs TRUNCATE as a statement, not the rows \
                             it removed; export it whole again",
                            self.table.schema, self.table.name
                        ),
                        code: None,
                    });
                }
            }
            kind::TABLE_MAP => {
                let map = table_map(e.body)?;
                // A skipped transaction's columns are no concern: its changes were published.
                if !self.skipping && map.schema == self.table.schema && map.table == self.table.name
                {
                    let layout = self.layout(&map)?;
                    self.layouts.insert(map.table_id, layout);
                }
                self.maps.insert(map.table_id, Arc::new(map));
            }
            k @ (kind::WRITE_ROWS_V1
            | kind::UPDATE_ROWS_V1
            | kind::DELETE_ROWS_V1
            | kind::WRITE_ROWS_V2
            | kind::UPDATE_ROWS_V2
            | kind::DELETE_ROWS_V2) => {
                let id = e.body.get(..6).map_or(0, |b| {
                    b.iter()
                        .rev()
                        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
                });
                let Some(map) = self.maps.get(&id) else {
                    return Err(Error::ConnectionLost(format!(
                        "rows of table {id} arrived before its table map"
                    )));
                };
                if self.skipping || map.schema != self.table.schema || map.table != self.table.name
                {
                    return Ok(());
                }
                let map = Arc::clone(map);
                let layout = self.layouts.get(&id).cloned().flatten();
                each_row(k, e.body, &map, |before, after| {
                    let (before, after) = (projected(&layout, before), projected(&layout, after));
                    match (before.as_deref(), after.as_deref()) {
                        (None, Some(after)) => self.append("insert", after, sink),
                        (Some(before), None) => self.append("delete", before, sink),
                        (Some(before), Some(after)) => {
                            // A row whose key changed leaves its old key: a merge by key deletes it.
                            if self.key_changed(before, after) {
                                self.append("delete", before, sink)?;
                            }
                            self.append("update", after, sink)
                        }
                        (None, None) => Ok(()),
                    }
                })?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Where the columns `map` logged sit among the columns now: None when the same. A
    /// change of columns stops the stream unless followed (on_schema_drift other than fail)
    /// and the log names its columns, so they can be matched by name.
    fn layout(&mut self, map: &TableMap) -> Result<Option<Vec<Option<usize>>>> {
        let layout = self.placed(map)?;
        self.check_types(map, layout.as_deref())?;
        Ok(layout)
    }

    fn placed(&mut self, map: &TableMap) -> Result<Option<Vec<Option<usize>>>> {
        let now: Vec<&str> = self.table.columns.iter().map(|c| c.name.as_str()).collect();
        let logged: Option<Vec<&str>> = map
            .names
            .as_ref()
            .map(|n| n.iter().map(String::as_str).collect());
        let same = match &logged {
            Some(names) => *names == now,
            None => map.types.len() == now.len(),
        };
        if same {
            return Ok(None);
        }
        let table = format!("{}.{}", map.schema, map.table);
        let drift = |message: String| Error::Query {
            message,
            code: Some("rivet-schema-drift".into()),
        };
        let Some(logged) = logged.filter(|_| self.table.follow_column_changes) else {
            let why = if self.table.follow_column_changes {
                "; the binary log does not name its columns, so they cannot be matched by name \
                 (set binlog_row_metadata=FULL on the server for changes logged from then on)"
            } else {
                " (on_schema_drift: fail)"
            };
            return Err(drift(format!(
                "the columns of {table} changed after these changes were logged: the log has {} \
                 column(s), the table now {}{why}",
                map.types.len(),
                now.len()
            )));
        };
        let note = layout_note(&table, &logged, &now);
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
        Ok(Some(column_layout(&logged, &now)))
    }

    /// Refuse a column logged as another type than it has now (its logged bytes would be read
    /// as the new type: a TINYINT's -1 as an INT's 255), or a DECIMAL of another scale.
    fn check_types(&self, map: &TableMap, layout: Option<&[Option<usize>]>) -> Result<()> {
        for (i, column) in self.table.columns.iter().enumerate() {
            let at = layout.map_or(Some(i), |l| l[i]);
            let (Some(j), Some(Some(codes))) = (at, self.table.logged_types.get(i)) else {
                continue;
            };
            let (Some(&logged), Some(&meta)) = (map.types.get(j), map.meta.get(j)) else {
                continue;
            };
            let decimal_changed = match column.kind {
                MyKind::Decimal(p, s) if logged == crate::mysql::types::code::NEWDECIMAL => {
                    meta != (u16::from(p) << 8 | u16::from(s as u8))
                }
                _ => false,
            };
            if !codes.contains(&logged) || decimal_changed {
                return Err(Error::Query {
                    message: format!(
                        "column {} of {}.{} changed type after these changes were logged (it is {} \
                         now, logged as type {logged} with metadata {meta}): its logged values \
                         cannot be read as the new type",
                        column.name, map.schema, map.table, column.source_type
                    ),
                    code: Some(crate::changes::COLUMN_RETYPED.into()),
                });
            }
        }
        Ok(())
    }

    fn key_changed(&self, before: &Image<'_>, after: &Image<'_>) -> bool {
        self.table
            .key
            .iter()
            .zip(before.iter().zip(after))
            .any(|(key, (b, a))| *key && a.is_some() && b != a)
    }

    fn append(&mut self, op: &str, image: &Image<'_>, sink: &BatchSink) -> Result<()> {
        let (pos, committed_at) = self.transaction.unwrap_or((self.file << 32, 0));
        let size = image
            .iter()
            .map(|v| match v {
                Some(Value::Bytes(b)) => b.len() + 4,
                _ => 9,
            })
            .sum();
        make_room(&mut self.batch, size, &self.table.limits, sink)?;
        protocol_row(
            image,
            self.table.columns,
            self.table.members,
            &mut self.payload,
        )?;
        self.batch.rows().append_row(&self.payload)?;
        let unchanged = image
            .iter()
            .zip(self.table.columns)
            .filter(|(v, _)| v.is_none())
            .map(|(_, c)| c.name.as_str());
        let mark = ChangeMark {
            op,
            pos,
            seq: self.seq,
            committed_at,
        };
        self.batch.mark(mark, unchanged);
        self.seq = self.seq.saturating_add(1);
        self.rows += 1;
        Ok(())
    }

    /// The batches' schema.
    pub fn schema(&self) -> arrow_schema::SchemaRef {
        self.batch.schema()
    }
}

impl TableSink for MyChangeSink<'_> {
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
    use arrow_array::RecordBatch;
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt64Type;

    use super::*;
    use crate::changes::change_schema;
    use crate::mysql::cdc::binlog::Header;
    use crate::mysql::types::code;
    use crate::stream::{BatchStream, EndOfData};

    fn event(kind: u8, next_position: u32, size: u32, body: &[u8]) -> Event<'_> {
        let header = Header {
            timestamp: 1_700_000_000,
            kind,
            server_id: 1,
            size,
            next_position,
            flags: 0,
        };
        Event { header, body }
    }

    /// Table 9, `s.t`, under `columns` INT columns, none NULL-able.
    fn table_map(columns: u8) -> Vec<u8> {
        let mut map = vec![9, 0, 0, 0, 0, 0, 0, 0, 1, b's', 0, 1, b't', 0, columns];
        map.extend(std::iter::repeat_n(code::LONG, usize::from(columns)));
        map.extend([0, 0]);
        map
    }

    /// Table 9, no flags, one column, all of it present, not NULL, the value 7.
    const WRITE: [u8; 15] = [9, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 7, 0, 0, 0];

    /// The change rows of `s.t` (one INT column, `id`) in `events` (kind, next position, size,
    /// body), for a table whose changes start at `from`; and whether the stream ended there.
    fn changes_of(events: Vec<(u8, u32, u32, Vec<u8>)>, from: u64) -> (RecordBatch, bool) {
        let columns = vec![MyColumn {
            name: "id".into(),
            kind: MyKind::Int32,
            source_type: "int".into(),
            logical: None,
        }];
        let schema = change_schema(&arrow_schema(&columns));
        let mut stream = BatchStream::spawn(schema, 1, move |sink| {
            let table = MyTable {
                schema: "s",
                name: "t",
                columns: &columns,
                members: &[None],
                key: &[true],
                logged_types: &[logged_as("int")],
                limits: BatchLimits::new(16, 1 << 20)?,
                follow_column_changes: false,
                from,
            };
            let mut changes = MyChangeSink::new(table, "bin.000003");
            for (kind, next, size, body) in &events {
                changes.take(&event(*kind, *next, *size, body), sink)?;
            }
            changes.finish(sink)?;
            Ok(EndOfData {
                server_rows: changes.rows(),
                expected_rows: None,
            })
        });
        let batch = stream.next_blocking().expect("read").expect("a batch");
        let ended = stream.next_blocking().expect("the end").is_none();
        (batch, ended)
    }

    /// MySQL with gtid_mode OFF starts each transaction with an anonymous GTID event: it
    /// places and times the transaction as a GTID event does.
    #[test]
    fn a_transaction_after_an_anonymous_gtid_event_has_its_own_position_and_time() {
        let (batch, _) = changes_of(
            vec![
                (MYSQL_ANONYMOUS_GTID, 250, 65, vec![]),
                (kind::TABLE_MAP, 300, 50, table_map(1)),
                (kind::WRITE_ROWS_V1, 340, 40, WRITE.to_vec()),
            ],
            0,
        );
        assert_eq!(batch.num_rows(), 1);
        let pos = batch.column(1).as_primitive::<UInt64Type>().value(0);
        assert_eq!(pos, (3 << 32) | 185, "file 3, at the anonymous GTID event");
        let at = batch
            .column(3)
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        assert_eq!(at.value(0), 1_700_000_000_000_000);
    }

    /// A log read for several tables starts where the table furthest behind is: a table skips
    /// the transactions it published, whatever columns they were logged under.
    #[test]
    fn a_skipped_transaction_is_not_read_and_its_columns_are_no_concern() {
        let (batch, ended) = changes_of(
            vec![
                // Starts at 185, published already; logged before a column was dropped, without
                // names: not readable under on_schema_drift: fail.
                (MYSQL_ANONYMOUS_GTID, 250, 65, vec![]),
                (kind::TABLE_MAP, 300, 50, table_map(2)),
                (kind::WRITE_ROWS_V1, 340, 40, WRITE.to_vec()),
                // Starts at 335: read.
                (MYSQL_ANONYMOUS_GTID, 400, 65, vec![]),
                (kind::TABLE_MAP, 450, 50, table_map(1)),
                (kind::WRITE_ROWS_V1, 490, 40, WRITE.to_vec()),
            ],
            (3 << 32) | 200,
        );
        assert_eq!(batch.num_rows(), 1);
        let pos = batch.column(1).as_primitive::<UInt64Type>().value(0);
        assert_eq!(pos, (3 << 32) | 335);
        assert!(ended);
    }
}
