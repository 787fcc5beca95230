//! MySQL/MariaDB behind the generic [`Session`]: scans stream prepared statements
//! (binary protocol) as Arrow batches.

use std::sync::Arc;

use crate::batch::{flush, make_room};
use crate::error::{Error, Result};
use crate::metadata::arrow_schema;
use crate::mysql::connect::MyParams;
use crate::mysql::decode::MyBatchBuilder;
use crate::mysql::types::{MyColumn, MyKind, code, map_column};
use crate::mysql::wire::{ColumnDef, MyConnection, cancel};
use crate::session::{Canceller, Described, ScanOptions, Session, Wire};
use crate::source::{Overrides, check_result_columns, wrap_select};
use crate::stream::{BatchSink, EndOfData};

/// A reusable MySQL/MariaDB connection.
pub type MySession = Session<MyConnection>;

/// A prepared scan statement.
pub struct MyPrepared {
    id: u32,
    wire_bits: Vec<bool>,
    expected_rows: Option<u64>,
    in_transaction: bool,
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn prepare_columns(conn: &mut MyConnection, query: &str) -> Result<Vec<ColumnDef>> {
    let (id, cols) = conn.prepare(query)?;
    conn.close_statement(id)?;
    Ok(cols)
}

/// The select list reading the `text` override columns as the server prints them.
fn text_select_list(defs: &[ColumnDef], text: &[String]) -> String {
    defs.iter()
        .map(|d| {
            let n = quote(&d.name);
            if !text.contains(&d.name) {
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
}

fn count_rows(conn: &mut MyConnection, sql: &str) -> Result<u64> {
    let rows = conn.query(&format!("SELECT COUNT(*) FROM ({sql}) AS _rivet_count"))?;
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Query {
            message: "the reconcile count returned no number".into(),
            code: None,
        })
}

impl Wire for MyConnection {
    type Target = MyParams;
    type Kind = MyKind;
    type Prepared = MyPrepared;

    fn open(params: &MyParams) -> Result<Self> {
        let mut conn = MyConnection::connect(params)?;
        // TIMESTAMP values come in the session time zone: make it UTC. Reads only.
        conn.execute("SET time_zone = '+00:00'")?;
        conn.execute("SET SESSION TRANSACTION READ ONLY")?;
        Ok(conn)
    }

    fn run_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        self.query(sql)
    }

    fn describe_query(
        &mut self,
        query: &str,
        overrides: &Overrides,
    ) -> Result<Described<MyColumn>> {
        let defs = prepare_columns(self, query)?;
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        check_result_columns(&names, overrides)?;
        let select_list =
            (!overrides.text.is_empty()).then(|| text_select_list(&defs, &overrides.text));
        let defs = match &select_list {
            Some(list) => prepare_columns(self, &wrap_select(list, query))?,
            None => defs,
        };
        let mut columns = Vec::with_capacity(defs.len());
        let mut refused = Vec::new();
        for d in &defs {
            match map_column(d, overrides.decimal.get(&d.name).copied()) {
                Ok(c) => columns.push(c),
                Err(u) => refused.push(u),
            }
        }
        if !refused.is_empty() {
            return Err(Error::Unsupported(refused));
        }
        Ok(Described {
            select_list,
            columns,
        })
    }

    fn origins(&mut self, query: &str) -> Result<Vec<Option<(String, String)>>> {
        Ok(prepare_columns(self, query)?
            .into_iter()
            .map(|d| {
                d.origin.map(|(schema, table, column)| {
                    (format!("{}.{}", quote(&schema), quote(&table)), column)
                })
            })
            .collect())
    }

    fn prepare_scan(
        &mut self,
        sql: &str,
        columns: &[MyColumn],
        options: &ScanOptions,
    ) -> Result<MyPrepared> {
        let timeout = if self.is_mariadb() {
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
        self.execute(&timeout)?;
        let expected_rows = if options.reconcile {
            // The count and the read share one InnoDB snapshot.
            self.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")?;
            Some(count_rows(self, sql)?)
        } else {
            None
        };
        let (id, defs) = self.prepare(sql)?;
        if defs.len() != columns.len() {
            return Err(Error::Config(
                "the chunk query returns other columns than the export's query".into(),
            ));
        }
        Ok(MyPrepared {
            id,
            wire_bits: defs.iter().map(|d| d.type_code == code::BIT).collect(),
            expected_rows,
            in_transaction: options.reconcile,
        })
    }

    fn stream(
        &mut self,
        prepared: MyPrepared,
        columns: Vec<MyColumn>,
        options: &ScanOptions,
        sink: &BatchSink,
    ) -> Result<EndOfData> {
        let limits = options.limits;
        let schema = arrow_schema(&columns);
        let mut builder = MyBatchBuilder::new(
            schema,
            columns,
            prepared.wire_bits,
            limits.max_rows.min(8192),
        );
        let server_rows = self.execute_statement(prepared.id, |row| {
            make_room(&mut builder, row.len(), &limits, sink)?;
            builder.append_row(row)
        })?;
        flush(&mut builder, sink)?;
        self.close_statement(prepared.id)?;
        if prepared.in_transaction {
            self.execute("COMMIT")?;
        }
        Ok(EndOfData {
            server_rows,
            expected_rows: prepared.expected_rows,
        })
    }

    fn canceller(&self, params: &Arc<MyParams>) -> Option<Canceller> {
        let id = self.connection_id;
        let params = Arc::clone(params);
        Some(Box::new(move || {
            let _ = cancel(&params, id);
        }))
    }
}
