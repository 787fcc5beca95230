//! One reusable connection, the same for every wire protocol: planning queries,
//! cached descriptions, then many bounded scans (one per chunk) without
//! reconnecting in between.
//!
//! A protocol (or an embedded database) plugs in through the small [`Wire`] trait: open,
//! query, describe, prepare a scan, stream it. Everything around that lives here once: lending the
//! connection to one scan at a time, reconnecting after a scan that broke it,
//! caching descriptions, and the background stream with its end-of-data rules.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use crate::batch::BatchLimits;
use crate::conn::{ConnectOptions, Endpoint, Protocol, Target};
use crate::error::{Error, Result};
use crate::metadata::{ArrowKind, Column, arrow_schema};
use crate::net::{Channel, OverLink};
use crate::source::{Overrides, clean_query, wrap_select};
use crate::stream::{BatchSink, BatchStream, EndOfData};

/// How rows leave a PostgreSQL server (other protocols have one way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMethod {
    /// `DECLARE ... CURSOR` then `FETCH FORWARD n` until exhausted.
    Cursor,
    /// One `COPY (query) TO STDOUT (FORMAT binary)`.
    Copy,
}

/// Options of one scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Read method (PostgreSQL).
    pub method: ReadMethod,
    /// Batch bounds.
    pub limits: BatchLimits,
    /// Time limit of every statement, 0 = none.
    pub statement_timeout_ms: u64,
    /// `lock_timeout` (PostgreSQL), 0 = none.
    pub lock_timeout_ms: u64,
    /// Pause between two round trips (PostgreSQL cursor reads).
    pub throttle_ms: u64,
    /// Read under this exported snapshot (`pg_export_snapshot()`).
    pub snapshot: Option<String>,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    /// Count the rows with `COUNT(*)` in the scan's own snapshot first, and report
    /// the count with the end of the data.
    pub reconcile: bool,
}

/// A described query: the select list applying `text` overrides (if any) and the
/// mapped columns.
#[derive(Debug)]
pub struct Described<C> {
    /// `SELECT <list> FROM (query) AS _rivet` reads the overridden columns as text.
    pub select_list: Option<String>,
    /// The result columns, mapped to Arrow.
    pub columns: Vec<C>,
}

/// What a session needs of any connection: how it travels, and an interrupt for a running scan.
pub trait Connection {
    /// How the connection travels (plain, TLS verified or not, Unix socket, a local file).
    fn channel(&self) -> Channel;
    /// Watch `flag` while a scan runs: a blocked read returns `Interrupted` once it is set.
    fn set_interrupt(&mut self, flag: Arc<AtomicBool>);
    /// Forget the interrupt flag of a finished scan.
    fn clear_interrupt(&mut self);
}

impl<T: OverLink> Connection for T {
    fn channel(&self) -> Channel {
        self.link().channel
    }

    fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.link_mut().watch(flag);
    }

    fn clear_interrupt(&mut self) {
        self.link_mut().unwatch();
    }
}

/// What a protocol provides to a [`Session`].
pub trait Wire: Connection + Sized + Send + 'static {
    /// Where its connections go.
    type Target: Target;
    /// A result column mapped to Arrow.
    type Kind: ArrowKind + Clone + Send + Sync + 'static;
    /// A scan ready to stream (statement prepared, transaction open).
    type Prepared: Send + 'static;

    /// Connect, authenticate and set the session up for reading.
    fn open(target: &Self::Target) -> Result<Self>;
    /// Run SQL; rows come back as text.
    fn run_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>>;
    /// Describe `query` and map its columns (refusing unsupported ones, all at once).
    fn describe_query(
        &mut self,
        query: &str,
        overrides: &Overrides,
    ) -> Result<Described<Column<Self::Kind>>>;
    /// For each result column of `query`, the table (quoted, qualified) and column it reads
    /// directly, when it does: what planning takes statistics from.
    fn origins(&mut self, query: &str) -> Result<Vec<Option<(String, String)>>>;
    /// Start the scan of `sql`: errors in the SQL are reported here, before any batch.
    fn prepare_scan(
        &mut self,
        sql: &str,
        columns: &[Column<Self::Kind>],
        options: &ScanOptions,
    ) -> Result<Self::Prepared>;
    /// Stream every row into batches; returns the server's account of the rows.
    fn stream(
        &mut self,
        prepared: Self::Prepared,
        columns: Vec<Column<Self::Kind>>,
        options: &ScanOptions,
        sink: &BatchSink,
    ) -> Result<EndOfData>;
    /// Something that asks the server, from another connection, to stop this
    /// connection's running statement (None when the server gave no way to).
    fn canceller(&self, target: &Arc<Self::Target>) -> Option<Canceller>;
}

/// Cancels a running statement on the server; best effort.
pub type Canceller = Box<dyn FnOnce() + Send>;

/// Descriptions already made on a session, by query and overrides.
type DescribeCache<C> = Arc<Mutex<HashMap<String, Arc<Described<C>>>>>;

/// One connection, lent to one scan at a time and reopened if a scan broke it.
pub struct Session<W: Wire> {
    params: Arc<W::Target>,
    slot: Arc<Mutex<Option<W>>>,
    described: DescribeCache<Column<W::Kind>>,
    channel: Channel,
}

impl<W: Wire> Clone for Session<W> {
    fn clone(&self) -> Self {
        Session {
            params: Arc::clone(&self.params),
            slot: Arc::clone(&self.slot),
            described: Arc::clone(&self.described),
            channel: self.channel,
        }
    }
}

fn poisoned<T>(_: PoisonError<T>) -> Error {
    Error::Internal("a previous scan on this session panicked".into())
}

/// `e` naming the server, when it is about the connection to it.
fn naming(place: &str, e: Error) -> Error {
    match e {
        Error::Connect { message, code } => Error::Connect {
            message: format!("{message} ({place})"),
            code,
        },
        Error::ConnectionLost(m) => Error::ConnectionLost(format!("{m} ({place})")),
        other => other,
    }
}

impl<P, W> Session<W>
where
    P: Protocol + Send + Sync + 'static,
    W: Wire<Target = Endpoint<P>>,
{
    /// Resolve `options` and connect now, so bad settings fail early.
    pub fn connect(options: &ConnectOptions) -> Result<Self> {
        Self::open(P::resolve(options)?)
    }
}

impl<W: Wire> Session<W> {
    /// Connect to `target` now, so a bad one fails early.
    pub fn open(target: W::Target) -> Result<Self> {
        let params = Arc::new(target);
        let conn = W::open(&params).map_err(|e| naming(&params.place(), e))?;
        Ok(Session {
            params,
            channel: conn.channel(),
            slot: Arc::new(Mutex::new(Some(conn))),
            described: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// How the session's connection travels (plain, TLS verified or not, Unix socket).
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Borrow the connection (reconnecting if the last scan broke it).
    fn take(&self) -> Result<W> {
        let existing = self.slot.lock().map_err(poisoned)?.take();
        match existing {
            Some(conn) => Ok(conn),
            None => W::open(&self.params).map_err(|e| self.named(e)),
        }
    }

    fn named(&self, e: Error) -> Error {
        naming(&self.params.place(), e)
    }

    fn give_back(&self, conn: W) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(conn);
        }
    }

    /// Run SQL; rows come back as text.
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut conn = self.take()?;
        let rows = conn.run_query(sql).map_err(|e| self.named(e))?;
        self.give_back(conn);
        Ok(rows)
    }

    /// For each result column of `query`, the base table and column it reads, if any.
    pub fn origins(&self, query: &str) -> Result<Vec<Option<(String, String)>>> {
        let mut conn = self.take()?;
        let origins = conn
            .origins(clean_query(query))
            .map_err(|e| self.named(e))?;
        self.give_back(conn);
        Ok(origins)
    }

    /// The mapped columns of `query` (after `text` overrides), cached per query.
    pub fn describe(&self, query: &str, overrides: &Overrides) -> Result<Vec<Column<W::Kind>>> {
        Ok(self.described_as(query, overrides)?.columns.clone())
    }

    fn described_as(
        &self,
        query: &str,
        overrides: &Overrides,
    ) -> Result<Arc<Described<Column<W::Kind>>>> {
        let key = format!(
            "{query}\u{0}{:?}\u{0}{:?}",
            overrides.text, overrides.decimal
        );
        if let Some(hit) = self.described.lock().map_err(poisoned)?.get(&key) {
            return Ok(Arc::clone(hit));
        }
        let mut conn = self.take()?;
        let described = Arc::new(
            conn.describe_query(clean_query(query), overrides)
                .map_err(|e| self.named(e))?,
        );
        self.give_back(conn);
        self.described
            .lock()
            .map_err(poisoned)?
            .insert(key, Arc::clone(&described));
        Ok(described)
    }

    /// Stream `query`, whose columns are those of `describe_as` (described once and
    /// cached, so many chunk queries of one base query cost no extra round trips).
    /// The connection returns to the session when the scan ends cleanly.
    pub fn scan(
        &self,
        query: &str,
        describe_as: Option<&str>,
        overrides: &Overrides,
        options: ScanOptions,
    ) -> Result<BatchStream> {
        let described = self.described_as(describe_as.unwrap_or(query), overrides)?;
        let query = clean_query(query);
        let sql = described
            .select_list
            .as_deref()
            .map_or_else(|| query.to_string(), |list| wrap_select(list, query));
        let mut conn = self.take()?;
        let prepared = conn
            .prepare_scan(&sql, &described.columns, &options)
            .map_err(|e| self.named(e))?;
        let columns = described.columns.clone();
        let session = self.clone();
        let canceller = conn.canceller(&self.params);
        let server = self.params.place();
        Ok(BatchStream::spawn(
            arrow_schema(&columns),
            options.prefetch,
            move |sink| {
                conn.set_interrupt(sink.cancel_flag());
                // On an error the connection is dropped mid-result (never reused).
                let end = match conn.stream(prepared, columns, &options, sink) {
                    Ok(end) => end,
                    Err(Error::Interrupted) => {
                        // Stop the statement on the server too, not only our reading of it.
                        if let Some(cancel) = canceller {
                            cancel();
                        }
                        return Err(Error::Interrupted);
                    }
                    Err(e) => return Err(naming(&server, e)),
                };
                conn.clear_interrupt();
                session.give_back(conn);
                Ok(end)
            },
        ))
    }
}
