//! A reusable MySQL/MariaDB connection: catalog queries, then bounded scans streamed
//! as Arrow batches from prepared statements (binary protocol).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::mysql::connect::MyParams;
use crate::mysql::decode::MyBatchBuilder;
use crate::mysql::types::{MyColumn, arrow_schema, code, map_column};
use crate::mysql::wire::{ColumnDef, MyConnection};
use crate::pg::batch::BatchLimits;
use crate::source::ConnectOptions;
use crate::source::Overrides;
use crate::stream::BatchStream;

/// Scan options.
#[derive(Debug, Clone)]
pub struct MyScanOptions {
    /// Batch bounds.
    pub limits: BatchLimits,
    /// Statement time limit, 0 = none.
    pub statement_timeout_ms: u64,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
}

type Described = (Option<String>, Vec<MyColumn>);

/// One connection, lent to one scan at a time and reopened if a scan broke it.
#[derive(Clone)]
pub struct MySession {
    params: Arc<MyParams>,
    slot: Arc<Mutex<Option<MyConnection>>>,
    described: Arc<Mutex<HashMap<String, Described>>>,
}

fn poisoned<T>(_: PoisonError<T>) -> Error {
    Error::Io("a previous scan on this session panicked".into())
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Strip what would break wrapping the query: trailing semicolons and blanks.
pub fn clean_query(query: &str) -> &str {
    query.trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

fn open_connection(params: &MyParams) -> Result<MyConnection> {
    let mut conn = MyConnection::connect(params)?;
    // TIMESTAMP values come in the session time zone: make it UTC. Reads only.
    conn.execute("SET time_zone = '+00:00'; SET SESSION TRANSACTION READ ONLY")?;
    Ok(conn)
}

impl MySession {
    /// Connect now, so bad settings fail early.
    pub fn connect(options: &ConnectOptions) -> Result<Self> {
        let params = Arc::new(options.resolve_mysql()?);
        let conn = open_connection(&params)?;
        Ok(MySession {
            params,
            slot: Arc::new(Mutex::new(Some(conn))),
            described: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn take(&self) -> Result<MyConnection> {
        let existing = self.slot.lock().map_err(poisoned)?.take();
        match existing {
            Some(conn) => Ok(conn),
            None => open_connection(&self.params),
        }
    }

    fn give_back(&self, conn: MyConnection) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(conn);
        }
    }

    /// Run SQL with the text protocol; rows come back as text.
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut conn = self.take()?;
        let rows = conn.query(sql)?;
        self.give_back(conn);
        Ok(rows)
    }

    fn prepare_columns(conn: &mut MyConnection, query: &str) -> Result<Vec<ColumnDef>> {
        let (id, cols) = conn.prepare(query)?;
        conn.close_statement(id)?;
        Ok(cols)
    }

    /// The mapped columns of `query` (after `text` overrides), cached per query.
    pub fn describe(&self, query: &str, overrides: &Overrides) -> Result<Vec<MyColumn>> {
        Ok(self.described_as(query, overrides)?.1)
    }

    fn described_as(&self, query: &str, overrides: &Overrides) -> Result<Described> {
        let key = format!(
            "{query}\u{0}{:?}\u{0}{:?}",
            overrides.text, overrides.decimal
        );
        if let Some(hit) = self.described.lock().map_err(poisoned)?.get(&key) {
            return Ok(hit.clone());
        }
        let query = clean_query(query);
        let mut conn = self.take()?;
        let defs = Self::prepare_columns(&mut conn, query)?;
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        let mut seen = HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(**n)) {
            return Err(Error::Config(format!(
                "the query returns two columns named \"{dup}\"; give them distinct aliases"
            )));
        }
        for name in overrides.text.iter().chain(overrides.decimal.keys()) {
            if !names.contains(&name.as_str()) {
                return Err(Error::Config(format!(
                    "columns: override for \"{name}\", but the query has no such column (it returns: {})",
                    names.join(", ")
                )));
            }
        }
        let list = (!overrides.text.is_empty()).then(|| {
            defs.iter()
                .map(|d| {
                    let n = quote(&d.name);
                    if !overrides.text.contains(&d.name) {
                        format!("_rivet.{n}")
                    } else if d.type_code == code::GEOMETRY {
                        // Geometry as text is its well-known text (WKT).
                        format!("ST_AsText(_rivet.{n}) AS {n}")
                    } else {
                        format!("CAST(_rivet.{n} AS CHAR) AS {n}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
        let defs = match &list {
            Some(l) => Self::prepare_columns(&mut conn, &wrap(l, query))?,
            None => defs,
        };
        self.give_back(conn);
        let mut mapped = Vec::with_capacity(defs.len());
        let mut refused = Vec::new();
        for d in &defs {
            match map_column(d, overrides.decimal.get(&d.name).copied()) {
                Ok(c) => mapped.push(c),
                Err(u) => refused.push(u),
            }
        }
        if !refused.is_empty() {
            return Err(Error::Unsupported(refused));
        }
        let value = (list, mapped);
        self.described
            .lock()
            .map_err(poisoned)?
            .insert(key, value.clone());
        Ok(value)
    }

    /// Stream `query`, whose columns are those of `describe_as` (or of `query` itself).
    pub fn scan(
        &self,
        query: &str,
        describe_as: Option<&str>,
        overrides: &Overrides,
        options: MyScanOptions,
    ) -> Result<BatchStream> {
        let (list, columns) = self.described_as(describe_as.unwrap_or(query), overrides)?;
        let query = clean_query(query);
        let run = list.map_or_else(|| query.to_string(), |l| wrap(&l, query));
        let mut conn = self.take()?;
        let timeout = if conn.is_mariadb() {
            format!(
                "SET SESSION max_statement_time = {}",
                options.statement_timeout_ms as f64 / 1000.0
            )
        } else {
            format!(
                "SET SESSION max_execution_time = {}",
                options.statement_timeout_ms
            )
        };
        conn.execute(&timeout)?;
        let (id, defs) = conn.prepare(&run)?;
        if defs.len() != columns.len() {
            return Err(Error::Config(
                "the chunk query returns other columns than the export's query".into(),
            ));
        }
        let wire_bits: Vec<bool> = defs.iter().map(|d| d.type_code == code::BIT).collect();
        let schema = arrow_schema(&columns);
        let session = self.clone();
        let limits = options.limits;
        Ok(BatchStream::spawn(
            schema.clone(),
            options.prefetch,
            move |sink| {
                conn.set_interrupt(sink.cancel_flag())?;
                let mut builder =
                    MyBatchBuilder::new(schema, columns, wire_bits, limits.max_rows.min(8192));
                // On an error the connection is dropped mid-result (never reused), so no draining.
                conn.execute_statement(id, |row| {
                    builder.append_row(row)?;
                    if builder.rows() >= limits.max_rows || builder.bytes() >= limits.max_bytes {
                        sink.send(builder.finish()?)?;
                    }
                    Ok(())
                })?;
                if builder.rows() > 0 {
                    sink.send(builder.finish()?)?;
                }
                conn.close_statement(id)?;
                conn.clear_interrupt()?;
                session.give_back(conn);
                Ok(())
            },
        ))
    }
}

fn wrap(list: &str, query: &str) -> String {
    format!("SELECT {list} FROM ({query}) AS _rivet")
}
