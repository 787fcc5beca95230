//! The SQLite source: an embedded file read with strict declared types.

mod session;
mod types;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use rusqlite::{Connection, OpenFlags};

use crate::batch::{Fill, RowBatch};
use crate::error::{Error, Result, UnsupportedColumn};
use crate::metadata::Column;

pub use session::{SqliteConnection, SqliteFile, SqliteSession};
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

/// Map the result columns of `stmt`: declared types, or `types` (column -> type name).
fn map_columns(
    stmt: &rusqlite::Statement<'_>,
    types: &HashMap<String, String>,
) -> Result<Vec<SqliteColumn>> {
    let mut mapped = Vec::new();
    let mut refused = Vec::new();
    for col in stmt.columns() {
        let name = col.name().to_string();
        let declared = types
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
