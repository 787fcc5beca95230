//! SQLite behind the generic [`Session`]: one read-only connection to the file, described
//! and scanned as a server's is, each scan in its own read transaction.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rusqlite::types::ValueRef;

use super::{
    SqliteBatch, SqliteColumn, SqliteKind, map_columns, open_connection, query_error, value_bytes,
};
use crate::batch::{Fill, flush, make_room};
use crate::conn::Target;
use crate::error::{Error, Result};
use crate::metadata::arrow_schema;
use crate::net::Channel;
use crate::session::{Canceller, Connection, Described, ScanOptions, Session, Wire};
use crate::source::{Overrides, check_result_columns};
use crate::stream::{BatchSink, EndOfData};

/// A session on a SQLite file.
pub type SqliteSession = Session<SqliteConnection>;

/// The database file a session reads.
#[derive(Debug, Clone)]
pub struct SqliteFile {
    /// Its path (or a `file:` URI).
    pub path: String,
}

impl Target for SqliteFile {
    fn place(&self) -> String {
        format!("file {}", self.path)
    }
}

/// A read-only connection to a SQLite file.
pub struct SqliteConnection {
    conn: rusqlite::Connection,
}

/// A scan whose read transaction is open: the rows the file held when it began.
pub struct SqlitePrepared {
    sql: String,
    expected_rows: Option<u64>,
}

/// Rows between two checks of the scan's cancel flag.
const CHECK_EVERY: u64 = 1024;

impl Connection for SqliteConnection {
    fn channel(&self) -> Channel {
        Channel::File
    }

    // A scan checks its sink's cancel flag between rows: nothing blocks on a socket.
    fn set_interrupt(&mut self, _flag: Arc<AtomicBool>) {}

    fn clear_interrupt(&mut self) {}
}

fn text_of(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Wire for SqliteConnection {
    type Target = SqliteFile;
    type Kind = SqliteKind;
    type Prepared = SqlitePrepared;

    fn open(file: &SqliteFile) -> Result<Self> {
        Ok(SqliteConnection {
            conn: open_connection(&file.path)?,
        })
    }

    fn run_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| query_error(&e))?;
        let width = stmt.column_count();
        let mut rows = stmt.query([]).map_err(|e| query_error(&e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| query_error(&e))? {
            let values = (0..width)
                .map(|i| row.get_ref(i).map(text_of).map_err(|e| query_error(&e)))
                .collect::<Result<Vec<_>>>()?;
            out.push(values);
        }
        Ok(out)
    }

    fn describe_query(
        &mut self,
        query: &str,
        overrides: &Overrides,
    ) -> Result<Described<SqliteColumn>> {
        let stmt = self.conn.prepare(query).map_err(|e| query_error(&e))?;
        let names: Vec<&str> = stmt.column_names().collect();
        check_result_columns(&names, overrides)?;
        Ok(Described {
            select_list: None,
            columns: map_columns(&stmt, &overrides.types)?,
        })
    }

    fn origins(&mut self, query: &str) -> Result<Vec<Option<(String, String)>>> {
        let stmt = self.conn.prepare(query).map_err(|e| query_error(&e))?;
        Ok(vec![None; stmt.column_count()])
    }

    fn prepare_scan(
        &mut self,
        sql: &str,
        _columns: &[SqliteColumn],
        options: &ScanOptions,
    ) -> Result<SqlitePrepared> {
        self.conn
            .execute_batch("BEGIN")
            .map_err(|e| query_error(&e))?;
        // Counted in the scan's own read transaction: the same rows the scan then reads.
        let expected_rows = if options.reconcile {
            let n: i64 = self
                .conn
                .query_row(&format!("SELECT count(*) FROM ({sql})"), [], |r| r.get(0))
                .map_err(|e| query_error(&e))?;
            Some(u64::try_from(n).unwrap_or(0))
        } else {
            None
        };
        Ok(SqlitePrepared {
            sql: sql.to_string(),
            expected_rows,
        })
    }

    fn stream(
        &mut self,
        prepared: SqlitePrepared,
        columns: Vec<SqliteColumn>,
        options: &ScanOptions,
        sink: &BatchSink,
    ) -> Result<EndOfData> {
        let limits = &options.limits;
        let mut batch = SqliteBatch {
            schema: arrow_schema(&columns),
            builders: columns
                .iter()
                .map(|c| super::SqliteBuilder::new(c.kind, limits.max_rows.min(8192)))
                .collect(),
            columns,
            fill: Fill::default(),
        };
        let mut stmt = self
            .conn
            .prepare(&prepared.sql)
            .map_err(|e| query_error(&e))?;
        let mut rows = stmt.query([]).map_err(|e| query_error(&e))?;
        let mut row_number = 0u64;
        while let Some(row) = rows.next().map_err(|e| query_error(&e))? {
            row_number += 1;
            if row_number % CHECK_EVERY == 0 {
                sink.check()?;
            }
            let mut size = 0;
            for i in 0..batch.builders.len() {
                size += value_bytes(row.get_ref(i).map_err(|e| query_error(&e))?);
            }
            make_room(&mut batch, size, limits, sink)?;
            for (i, b) in batch.builders.iter_mut().enumerate() {
                let v = row.get_ref(i).map_err(|e| query_error(&e))?;
                b.append(v).map_err(|m| {
                    Error::decode(&batch.columns[i].name, format!("{m} (row {row_number})"))
                })?;
            }
            batch.fill.rows += 1;
            batch.fill.bytes += size;
        }
        drop(rows);
        drop(stmt);
        flush(&mut batch, sink)?;
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| query_error(&e))?;
        Ok(EndOfData {
            server_rows: row_number,
            expected_rows: prepared.expected_rows,
        })
    }

    fn canceller(&self, _file: &Arc<SqliteFile>) -> Option<Canceller> {
        let handle = self.conn.get_interrupt_handle();
        Some(Box::new(move || handle.interrupt()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchLimits;
    use crate::session::ReadMethod;

    fn options(reconcile: bool) -> ScanOptions {
        ScanOptions {
            method: ReadMethod::Cursor,
            limits: BatchLimits::new(100, 1 << 20).expect("limits"),
            statement_timeout_ms: 0,
            lock_timeout_ms: 0,
            throttle_ms: 0,
            snapshot: None,
            prefetch: 2,
            reconcile,
        }
    }

    #[test]
    fn one_session_describes_once_and_scans_again_and_again() {
        let path =
            std::env::temp_dir().join(format!("rivet-sqlite-session-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let setup = rusqlite::Connection::open(&path).expect("create");
        setup
            .execute_batch(
                "CREATE TABLE t (id INTEGER, name TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250)
                 INSERT INTO t SELECT i, 'n' || i FROM n;",
            )
            .expect("fill");
        let session = SqliteSession::open(SqliteFile {
            path: path.display().to_string(),
        })
        .expect("open");
        assert_eq!(session.channel(), Channel::File);
        let columns = session
            .describe("SELECT * FROM t", &Overrides::default())
            .expect("describe");
        assert_eq!(
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["id", "name"]
        );
        for (query, want) in [
            ("SELECT * FROM t WHERE id <= 120", 120),
            ("SELECT * FROM t WHERE id > 120", 130),
        ] {
            let mut stream = session
                .scan(
                    query,
                    Some("SELECT * FROM t"),
                    &Overrides::default(),
                    options(true),
                )
                .expect("scan");
            let mut rows = 0;
            while let Some(batch) = stream.next_blocking().expect("batch") {
                assert!(batch.num_rows() <= 100);
                rows += batch.num_rows();
            }
            assert_eq!(rows, want);
            let end = stream.end().expect("end of data");
            assert_eq!(
                (end.server_rows, end.expected_rows),
                (want as u64, Some(want as u64))
            );
        }
        assert_eq!(
            session
                .query("SELECT count(*), max(name) FROM t")
                .expect("query"),
            vec![vec![Some("250".to_string()), Some("n99".to_string())]]
        );
        let typed = Overrides {
            types: [("missing".to_string(), "int8".to_string())].into(),
            ..Overrides::default()
        };
        assert!(session.describe("SELECT id FROM t", &typed).is_err());
        drop(setup);
        let _ = std::fs::remove_file(&path);
    }
}
