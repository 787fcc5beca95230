//! Streaming a query out of PostgreSQL as Arrow batches.
//!
//! Two read methods: a server-side cursor read with `FETCH FORWARD n`, so no
//! single statement runs long (the next FETCH is pipelined so the server never
//! waits for the client), and a binary `COPY (query) TO STDOUT` for bounded
//! chunk queries. Both run inside one read-only transaction with `SET LOCAL`
//! timeouts.

use std::collections::VecDeque;
use std::thread;
use std::time::Duration;

use crate::error::Result;
use crate::pg::batch::{BatchLimits, PgBatchBuilder, PgColumn, arrow_schema};
use crate::pg::probe::{apply_text_overrides, probe};
use crate::pg::tuple::{CopyDecoder, decode_tuple};
use crate::pg::wire::PgConnection;
use crate::source::ConnectOptions;
use crate::source::Overrides;
use crate::stream::{BatchSink, BatchStream};

/// How rows leave the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMethod {
    /// `DECLARE ... CURSOR` then `FETCH FORWARD n` until exhausted.
    Cursor,
    /// One `COPY (query) TO STDOUT (FORMAT binary)`.
    Copy,
}

/// Options of one scan.
#[derive(Debug, Clone)]
pub struct PgScanOptions {
    /// Read method.
    pub method: ReadMethod,
    /// Batch bounds.
    pub limits: BatchLimits,
    /// `statement_timeout` for every statement, 0 = none.
    pub statement_timeout_ms: u64,
    /// `lock_timeout`, 0 = none.
    pub lock_timeout_ms: u64,
    /// Pause between two FETCHes.
    pub throttle_ms: u64,
    /// Read under this exported snapshot (`pg_export_snapshot()`).
    pub snapshot: Option<String>,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
}

const CURSOR: &str = "rivet_cursor";
const FIRST_FETCH_ROWS: usize = 1_000;

/// Strip what would break wrapping the query: trailing semicolons and blanks.
pub fn clean_query(query: &str) -> &str {
    query.trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

/// Open the read-only transaction a scan runs in, with its timeouts and snapshot.
pub fn begin(conn: &mut PgConnection, options: &PgScanOptions) -> Result<()> {
    let mut sql = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;");
    if let Some(id) = &options.snapshot {
        sql.push_str(&format!(
            "SET TRANSACTION SNAPSHOT '{}';",
            id.replace('\'', "''")
        ));
    }
    sql.push_str(&format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {};",
        options.statement_timeout_ms, options.lock_timeout_ms
    ));
    conn.execute(&sql)
}

fn connect(connect: &ConnectOptions) -> Result<PgConnection> {
    PgConnection::connect(&connect.resolve_postgres()?)
}

/// Describe a query (for plans and type reports) without reading rows.
pub fn describe(
    options: &ConnectOptions,
    query: &str,
    overrides: &Overrides,
) -> Result<Vec<PgColumn>> {
    let mut conn = connect(options)?;
    conn.execute("BEGIN READ ONLY")?;
    let query = apply_text_overrides(&mut conn, clean_query(query), &overrides.text)?;
    probe(&mut conn, &query, overrides)
}

/// Connect, check the result's types, and start streaming on a background thread.
/// Unsupported types and SQL errors are reported here, before any batch.
pub fn open(
    options: &ConnectOptions,
    query: &str,
    overrides: &Overrides,
    scan: PgScanOptions,
) -> Result<BatchStream> {
    let mut conn = connect(options)?;
    begin(&mut conn, &scan)?;
    let query = apply_text_overrides(&mut conn, clean_query(query), &overrides.text)?;
    let columns = probe(&mut conn, &query, overrides)?;
    start(conn, query, columns, scan, drop)
}

/// Stream `query` (already probed as `columns`) on a background thread inside the
/// transaction `conn` is in; `done` receives the connection after a clean finish.
pub fn start(
    mut conn: PgConnection,
    query: String,
    columns: Vec<PgColumn>,
    scan: PgScanOptions,
    done: impl FnOnce(PgConnection) + Send + 'static,
) -> Result<BatchStream> {
    let schema = arrow_schema(&columns);
    if scan.method == ReadMethod::Cursor {
        conn.execute(&format!("DECLARE {CURSOR} NO SCROLL CURSOR FOR {query}"))?;
    }
    let capacity = scan
        .limits
        .max_rows
        .min(FIRST_FETCH_ROWS.max(scan.limits.max_rows / 4));
    Ok(BatchStream::spawn(schema, scan.prefetch, move |sink| {
        conn.set_interrupt(sink.cancel_flag())?;
        let mut builder = PgBatchBuilder::new(columns, capacity);
        match scan.method {
            ReadMethod::Cursor => fetch_all(&mut conn, &mut builder, &scan, sink)?,
            ReadMethod::Copy => {
                let mut decoder = CopyDecoder::default();
                conn.copy_out(
                    &format!("COPY ({query}) TO STDOUT (FORMAT binary)"),
                    |data| decoder.feed(data, &mut builder, &scan.limits, sink),
                )?;
                decoder.finish(&mut builder, sink)?;
            }
        }
        conn.execute("COMMIT")?;
        conn.clear_interrupt()?;
        done(conn);
        Ok(())
    }))
}

fn send_fetch(conn: &mut PgConnection, rows: usize) -> Result<()> {
    conn.send_binary_query(&format!("FETCH FORWARD {rows} FROM {CURSOR}"))
}

fn fetch_all(
    conn: &mut PgConnection,
    builder: &mut PgBatchBuilder,
    options: &PgScanOptions,
    sink: &BatchSink,
) -> Result<()> {
    let limits = options.limits;
    // Keep one FETCH queued behind the one being read, unless throttled.
    let depth = if options.throttle_ms > 0 { 1 } else { 2 };
    let mut fetch_rows = limits.max_rows.min(FIRST_FETCH_ROWS);
    let mut queued = VecDeque::new();
    while queued.len() < depth {
        send_fetch(conn, fetch_rows)?;
        queued.push_back(fetch_rows);
    }
    while let Some(requested) = queued.pop_front() {
        sink.check()?;
        let got = conn.read_binary_result(|row| decode_tuple(row, builder))? as usize;
        if let Some(bytes_per_row) = builder.bytes().checked_div(got) {
            // Size later FETCHes so one batch stays near the byte limit.
            fetch_rows = (limits.max_bytes / bytes_per_row.max(1)).clamp(1, limits.max_rows);
            sink.send(builder.finish()?)?;
        }
        if got < requested {
            // The cursor is exhausted; the queued FETCHes return nothing.
            while queued.pop_front().is_some() {
                conn.read_binary_result(|_| Ok(()))?;
            }
            break;
        }
        if options.throttle_ms > 0 {
            thread::sleep(Duration::from_millis(options.throttle_ms));
        }
        send_fetch(conn, fetch_rows)?;
        queued.push_back(fetch_rows);
    }
    conn.execute(&format!("CLOSE {CURSOR}"))
}
