//! A reusable connection: catalog queries for planning, then many bounded scans
//! (one per chunk) without reconnecting in between.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::pg::batch::PgColumn;
use crate::pg::connect::ConnectParams;
use crate::pg::probe::{probe, text_select_list, wrap_select};
use crate::pg::scan::{PgScanOptions, begin, clean_query, start};
use crate::pg::wire::PgConnection;
use crate::source::ConnectOptions;
use crate::source::Overrides;
use crate::stream::BatchStream;

/// A described query: the select list applying `text` overrides (if any) and the columns.
type Described = (Option<String>, Vec<PgColumn>);

/// One connection, lent to one scan at a time and reopened if a scan broke it.
#[derive(Clone)]
pub struct PgSession {
    params: Arc<ConnectParams>,
    slot: Arc<Mutex<Option<PgConnection>>>,
    described: Arc<Mutex<HashMap<String, Described>>>,
}

fn busy<T>(_: PoisonError<T>) -> Error {
    Error::Io("a previous scan on this session panicked".into())
}

impl PgSession {
    /// Connect now, so bad settings fail early.
    pub fn connect(options: &ConnectOptions) -> Result<Self> {
        let params = Arc::new(options.resolve_postgres()?);
        let conn = PgConnection::connect(&params)?;
        Ok(PgSession {
            params,
            slot: Arc::new(Mutex::new(Some(conn))),
            described: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Borrow the connection (reconnecting if the last scan broke it).
    fn take(&self) -> Result<PgConnection> {
        let existing = self.slot.lock().map_err(busy)?.take();
        match existing {
            Some(conn) => Ok(conn),
            None => PgConnection::connect(&self.params),
        }
    }

    fn give_back(&self, conn: PgConnection) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(conn);
        }
    }

    /// Run statements with the simple protocol; rows come back as text.
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut conn = self.take()?;
        let rows = conn.simple_query(sql)?;
        self.give_back(conn);
        Ok(rows)
    }

    /// The mapped columns of `query` (after `text` overrides), cached per query.
    pub fn describe(&self, query: &str, overrides: &Overrides) -> Result<Vec<PgColumn>> {
        Ok(self.described_as(query, overrides)?.1)
    }

    fn described_as(&self, query: &str, overrides: &Overrides) -> Result<Described> {
        let key = format!(
            "{query}\u{0}{:?}\u{0}{:?}",
            overrides.text, overrides.decimal
        );
        if let Some(hit) = self.described.lock().map_err(busy)?.get(&key) {
            return Ok(hit.clone());
        }
        let query = clean_query(query);
        let mut conn = self.take()?;
        let list = text_select_list(&mut conn, query, &overrides.text)?;
        let wrapped = list.as_deref().map(|l| wrap_select(l, query));
        let columns = probe(&mut conn, wrapped.as_deref().unwrap_or(query), overrides)?;
        self.give_back(conn);
        let value = (list, columns);
        self.described
            .lock()
            .map_err(busy)?
            .insert(key, value.clone());
        Ok(value)
    }

    /// Stream `query`, whose columns are those of `describe_as` (described once and
    /// cached, so many chunk queries of one base query cost no extra round trips).
    /// The connection returns to the session when the scan ends cleanly.
    pub fn scan(
        &self,
        query: &str,
        describe_as: Option<&str>,
        overrides: &Overrides,
        options: PgScanOptions,
    ) -> Result<BatchStream> {
        let (list, columns) = self.described_as(describe_as.unwrap_or(query), overrides)?;
        let query = clean_query(query);
        let run = list.map_or_else(|| query.to_string(), |l| wrap_select(&l, query));
        let mut conn = self.take()?;
        begin(&mut conn, &options)?;
        let session = self.clone();
        start(conn, run, columns, options, move |conn| {
            session.give_back(conn)
        })
    }
}
