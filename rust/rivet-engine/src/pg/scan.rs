//! Streaming a query out of PostgreSQL as Arrow batches.
//!
//! Two read methods: a server-side cursor read with `FETCH FORWARD n`, so no
//! single statement runs long, and a binary `COPY (query) TO STDOUT` for
//! bounded chunk queries. Both run inside one read-only transaction with
//! `SET LOCAL` timeouts.

use std::thread;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{FromSql, Type};
use postgres::Client;

use crate::error::{Error, Result};
use crate::pg::batch::{BatchLimits, PgBatchBuilder, PgColumn, arrow_schema};
use crate::pg::connect::PgConnectOptions;
use crate::pg::copy::read_copy;
use crate::pg::errors::query_error;
use crate::pg::probe::{Overrides, apply_text_overrides, probe};
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

fn begin(client: &mut Client, options: &PgScanOptions) -> Result<()> {
    let mut sql = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;");
    if let Some(id) = &options.snapshot {
        sql.push_str(&format!("SET TRANSACTION SNAPSHOT '{}';", id.replace('\'', "''")));
    }
    sql.push_str(&format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {};",
        options.statement_timeout_ms, options.lock_timeout_ms
    ));
    client.batch_execute(&sql).map_err(|e| query_error(&e))
}

/// Describe a query (for plans and type reports) without reading rows.
pub fn describe(connect: &PgConnectOptions, query: &str, overrides: &Overrides) -> Result<Vec<PgColumn>> {
    let mut client = connect.connect()?;
    client
        .batch_execute("BEGIN READ ONLY")
        .map_err(|e| query_error(&e))?;
    let query = apply_text_overrides(&mut client, clean_query(query), &overrides.text)?;
    probe(&mut client, &query, overrides)
}

/// Connect, check the result's types, and start streaming on a background thread.
/// Unsupported types and SQL errors are reported here, before any batch.
pub fn open(
    connect: &PgConnectOptions,
    query: &str,
    overrides: &Overrides,
    options: PgScanOptions,
) -> Result<BatchStream> {
    let mut client = connect.connect()?;
    begin(&mut client, &options)?;
    let query = apply_text_overrides(&mut client, clean_query(query), &overrides.text)?;
    let columns = probe(&mut client, &query, overrides)?;
    let schema = arrow_schema(&columns);
    if options.method == ReadMethod::Cursor {
        client
            .batch_execute(&format!("DECLARE {CURSOR} NO SCROLL CURSOR FOR {query}"))
            .map_err(|e| query_error(&e))?;
    }
    let capacity = options.limits.max_rows.min(FIRST_FETCH_ROWS.max(options.limits.max_rows / 4));
    Ok(BatchStream::spawn(schema, options.prefetch, move |sink| {
        let mut builder = PgBatchBuilder::new(columns, capacity);
        match options.method {
            ReadMethod::Cursor => fetch_all(&mut client, &mut builder, &options, sink)?,
            ReadMethod::Copy => {
                let copy = format!("COPY ({query}) TO STDOUT (FORMAT binary)");
                let reader = client.copy_out(copy.as_str()).map_err(|e| query_error(&e))?;
                read_copy(reader, &mut builder, &options.limits, sink)?;
            }
        }
        client.batch_execute("COMMIT").map_err(|e| query_error(&e))
    }))
}

/// A value's raw binary bytes, whatever its type.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn fetch_all(
    client: &mut Client,
    builder: &mut PgBatchBuilder,
    options: &PgScanOptions,
    sink: &BatchSink,
) -> Result<()> {
    let limits = options.limits;
    let width = builder.width();
    let mut fetch_rows = limits.max_rows.min(FIRST_FETCH_ROWS);
    loop {
        sink.check()?;
        let statement = client
            .prepare(&format!("FETCH FORWARD {fetch_rows} FROM {CURSOR}"))
            .map_err(|e| query_error(&e))?;
        let mut rows = client
            .query_raw(&statement, std::iter::empty::<i32>())
            .map_err(|e| query_error(&e))?;
        let mut got = 0usize;
        while let Some(row) = rows.next().map_err(|e| query_error(&e))? {
            for col in 0..width {
                let value: Option<Raw<'_>> = row
                    .try_get(col)
                    .map_err(|e| Error::Io(format!("reading a row failed: {e}")))?;
                builder.append(col, value.map(|r| r.0))?;
            }
            builder.end_row();
            got += 1;
        }
        if got == 0 {
            break;
        }
        // Size the next FETCH so one batch stays near the byte limit.
        let bytes_per_row = (builder.bytes() / got).max(1);
        sink.send(builder.finish()?)?;
        if got < fetch_rows {
            break;
        }
        fetch_rows = (limits.max_bytes / bytes_per_row).clamp(1, limits.max_rows);
        if options.throttle_ms > 0 {
            thread::sleep(Duration::from_millis(options.throttle_ms));
        }
    }
    client
        .batch_execute(&format!("CLOSE {CURSOR}"))
        .map_err(|e| query_error(&e))
}
