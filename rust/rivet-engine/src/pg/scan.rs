//! Streaming a query out of PostgreSQL as Arrow batches.
//!
//! Two read methods: a server-side cursor read with `FETCH FORWARD n`, so no
//! single statement runs long (the next FETCH is pipelined so the server never
//! waits for the client), and a binary `COPY (query) TO STDOUT` for bounded
//! chunk queries. Both run inside one read-only transaction with `SET LOCAL`
//! timeouts. Every round trip's rows are checked against the server's command
//! tag, and their sum is the scan's end-of-data count.

use std::collections::VecDeque;
use std::thread;
use std::time::Duration;

use crate::batch::{flush, make_room};
use crate::error::{Error, Result};
use crate::pg::batch::{PgBatchBuilder, PgColumn};
use crate::pg::tuple::{CopyDecoder, decode_tuple};
use crate::pg::wire::PgConnection;
use crate::session::{ReadMethod, ScanOptions};
use crate::stream::{BatchSink, EndOfData};

const CURSOR: &str = "rivet_cursor";
const FIRST_FETCH_ROWS: usize = 1_000;

/// A scan whose transaction is open (and, for cursor reads, whose cursor is declared).
pub struct PgPrepared {
    sql: String,
    expected_rows: Option<u64>,
}

/// Open the read-only transaction a scan runs in, with its timeouts and snapshot.
fn begin(conn: &mut PgConnection, options: &ScanOptions) -> Result<()> {
    let mut sql = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;");
    if let Some(id) = &options.snapshot {
        // A snapshot id is hex digits and dashes (`00000003-0000001B-1`); anything else is refused.
        let valid = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if !valid {
            return Err(Error::Config(
                "the snapshot id is not one PostgreSQL exports".into(),
            ));
        }
        sql.push_str(&format!("SET TRANSACTION SNAPSHOT '{id}';"));
    }
    sql.push_str(&format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {};",
        options.statement_timeout_ms, options.lock_timeout_ms
    ));
    conn.execute(&sql)
}

/// Begin the transaction, count the rows if asked, and declare the cursor.
pub fn prepare(conn: &mut PgConnection, sql: &str, options: &ScanOptions) -> Result<PgPrepared> {
    begin(conn, options)?;
    let expected_rows = if options.reconcile {
        let rows = conn.query(&format!("SELECT count(*) FROM ({sql}) AS _rivet_count"))?;
        let count = rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::Query {
                message: "the reconcile count returned no number".into(),
                code: None,
            })?;
        Some(count)
    } else {
        None
    };
    if options.method == ReadMethod::Cursor {
        // One statement through the extended protocol: nothing stacked after it can run.
        conn.query(&format!("DECLARE {CURSOR} NO SCROLL CURSOR FOR {sql}"))?;
    }
    Ok(PgPrepared {
        sql: sql.to_string(),
        expected_rows,
    })
}

/// Read every row of a prepared scan into batches, then commit.
pub fn stream(
    conn: &mut PgConnection,
    prepared: PgPrepared,
    columns: Vec<PgColumn>,
    options: &ScanOptions,
    sink: &BatchSink,
) -> Result<EndOfData> {
    let capacity = options
        .limits
        .max_rows
        .min(FIRST_FETCH_ROWS.max(options.limits.max_rows / 4));
    let mut builder = PgBatchBuilder::new(columns, capacity);
    let server_rows = match options.method {
        ReadMethod::Cursor => fetch_all(conn, &mut builder, options, sink)?,
        ReadMethod::Copy => {
            let mut decoder = CopyDecoder::default();
            let limits = options.limits;
            let rows = conn.copy_out(
                &format!("COPY ({}) TO STDOUT (FORMAT binary)", prepared.sql),
                |data| decoder.feed(data, &mut builder, &limits, sink),
            )?;
            decoder.finish(&mut builder, sink)?;
            rows
        }
    };
    conn.execute("COMMIT")?;
    Ok(EndOfData {
        server_rows,
        expected_rows: prepared.expected_rows,
    })
}

fn send_fetch(conn: &mut PgConnection, rows: usize) -> Result<()> {
    conn.send_binary_query(&format!("FETCH FORWARD {rows} FROM {CURSOR}"))
}

/// Every row of the cursor; returns how many the server sent.
fn fetch_all(
    conn: &mut PgConnection,
    builder: &mut PgBatchBuilder,
    options: &ScanOptions,
    sink: &BatchSink,
) -> Result<u64> {
    let limits = options.limits;
    // Keep one FETCH queued behind the one being read, unless throttled.
    let depth = if options.throttle_ms > 0 { 1 } else { 2 };
    let mut fetch_rows = limits.max_rows.min(FIRST_FETCH_ROWS);
    let mut queued = VecDeque::new();
    let mut total = 0u64;
    while queued.len() < depth {
        send_fetch(conn, fetch_rows)?;
        queued.push_back(fetch_rows);
    }
    while let Some(requested) = queued.pop_front() {
        sink.check()?;
        let mut fetched_bytes = 0usize;
        let got = conn.read_binary_result(|row| {
            make_room(builder, row.len(), &limits, sink)?;
            fetched_bytes += row.len();
            decode_tuple(row, builder)
        })?;
        total += got;
        if let Some(bytes_per_row) = fetched_bytes.checked_div(got as usize) {
            // Size later FETCHes so one batch stays near the byte limit.
            fetch_rows = (limits.max_bytes / bytes_per_row.max(1)).clamp(1, limits.max_rows);
            flush(builder, sink)?;
        }
        if (got as usize) < requested {
            // The cursor is exhausted; the queued FETCHes must return nothing.
            while queued.pop_front().is_some() {
                let late = conn.read_binary_result(|_| Ok(()))?;
                if late > 0 {
                    return Err(Error::Integrity(format!(
                        "the cursor returned {late} row(s) after it was exhausted"
                    )));
                }
            }
            break;
        }
        if options.throttle_ms > 0 {
            thread::sleep(Duration::from_millis(options.throttle_ms));
        }
        send_fetch(conn, fetch_rows)?;
        queued.push_back(fetch_rows);
    }
    conn.execute(&format!("CLOSE {CURSOR}"))?;
    Ok(total)
}
