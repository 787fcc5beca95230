//! The SQLite source: an embedded file read with strict declared types.

mod types;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use rusqlite::{Connection, OpenFlags};

use crate::batch::{BatchLimits, Fill, RowBatch, flush, make_room};
use crate::error::{Error, Result, UnsupportedColumn};
use crate::metadata::{Column, arrow_schema};
use crate::stream::{BatchStream, EndOfData};

pub use types::{SqliteKind, kind_from_decl};
use values::SqliteBuilder;

/// A result column mapped to Arrow.
pub type SqliteColumn = Column<SqliteKind>;

fn open_connection(path: &str) -> Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| Error::Connect {
        message: format!("cannot open SQLite database '{path}': {e}"),
        code: None,
    })
}

fn query_error(e: &rusqlite::Error) -> Error {
    Error::Query {
        message: e.to_string(),
        code: None,
    }
}

/// Describe `query`: declared types, or `overrides` (column -> type name).
pub fn describe(
    path: &str,
    query: &str,
    overrides: &HashMap<String, String>,
) -> Result<Vec<SqliteColumn>> {
    let conn = open_connection(path)?;
    let stmt = conn.prepare(query).map_err(|e| query_error(&e))?;
    let mut mapped = Vec::new();
    let mut refused = Vec::new();
    let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
    for name in overrides.keys() {
        if !names.contains(name) {
            return Err(Error::Config(format!(
                "columns: override for \"{name}\", but the query has no such column (it returns: {})",
                names.join(", ")
            )));
        }
    }
    for col in stmt.columns() {
        let name = col.name().to_string();
        let declared = overrides
            .get(&name)
            .cloned()
            .or_else(|| col.decl_type().map(str::to_string));
        match declared.as_deref().and_then(kind_from_decl) {
            Some(kind) => mapped.push(SqliteColumn {
                name,
                kind,
                source_type: declared.unwrap_or_default(),
                logical: None,
            }),
            None => refused.push(UnsupportedColumn {
                hint: match &declared {
                    None => format!(
                        "an expression has no declared type in SQLite; set columns: {{{name}: <type>}} \
                         (int8, float8, text, blob, bool, date, timestamp or decimal(p,s))"
                    ),
                    Some(_) => format!(
                        "set columns: {{{name}: <type>}} (int8, float8, text, blob, bool, date, \
                         timestamp or decimal(p,s))"
                    ),
                },
                source_type: declared.unwrap_or_else(|| "(none)".into()),
                column: name,
            }),
        }
    }
    if refused.is_empty() {
        Ok(mapped)
    } else {
        Err(Error::Unsupported(refused))
    }
}

/// Rows of a SQLite result being accumulated into a batch.
struct SqliteBatch {
    schema: SchemaRef,
    columns: Vec<SqliteColumn>,
    builders: Vec<SqliteBuilder>,
    fill: Fill,
}

impl RowBatch for SqliteBatch {
    fn fill(&self) -> Fill {
        self.fill
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let arrays = self
            .builders
            .iter_mut()
            .map(SqliteBuilder::finish)
            .collect();
        self.fill = Fill::default();
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| Error::Io(format!("assembling a batch failed: {e}")))
    }
}

fn value_bytes(v: rusqlite::types::ValueRef<'_>) -> usize {
    match v {
        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t.len(),
        _ => 8,
    }
}

/// Check the query's types, then stream it on a background thread. With
/// `reconcile`, the rows are counted first in the same read transaction.
pub fn open(
    path: &str,
    query: &str,
    overrides: &HashMap<String, String>,
    limits: BatchLimits,
    prefetch: usize,
    reconcile: bool,
) -> Result<BatchStream> {
    let columns = describe(path, query, overrides)?;
    let schema = arrow_schema(&columns);
    let (path, query) = (path.to_string(), query.to_string());
    let batch_schema = Arc::clone(&schema);
    Ok(BatchStream::spawn(schema, prefetch, move |sink| {
        let conn = open_connection(&path)?;
        conn.execute_batch("BEGIN").map_err(|e| query_error(&e))?;
        let expected_rows = if reconcile {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM ({query})"), [], |r| r.get(0))
                .map_err(|e| query_error(&e))?;
            Some(n.max(0) as u64)
        } else {
            None
        };
        let mut stmt = conn.prepare(&query).map_err(|e| query_error(&e))?;
        let mut batch = SqliteBatch {
            schema: batch_schema,
            builders: columns
                .iter()
                .map(|c| SqliteBuilder::new(c.kind, limits.max_rows.min(8192)))
                .collect(),
            columns,
            fill: Fill::default(),
        };
        let mut rows = stmt.query([]).map_err(|e| query_error(&e))?;
        let mut row_number = 0u64;
        while let Some(row) = rows.next().map_err(|e| query_error(&e))? {
            row_number += 1;
            let mut size = 0;
            for i in 0..batch.builders.len() {
                size += value_bytes(row.get_ref(i).map_err(|e| query_error(&e))?);
            }
            make_room(&mut batch, size, &limits, sink)?;
            for (i, b) in batch.builders.iter_mut().enumerate() {
                let v = row.get_ref(i).map_err(|e| query_error(&e))?;
                b.append(v).map_err(|m| {
                    Error::decode(&batch.columns[i].name, format!("{m} (row {row_number})"))
                })?;
            }
            batch.fill.rows += 1;
            batch.fill.bytes += size;
        }
        flush(&mut batch, sink)?;
        Ok(EndOfData {
            server_rows: row_number,
            expected_rows,
        })
    }))
}
