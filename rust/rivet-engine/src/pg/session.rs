//! PostgreSQL behind the generic [`Session`]: describe with `text` overrides, scans
//! by cursor or binary COPY.

use std::sync::Arc;

use crate::error::Result;
use crate::pg::batch::PgColumn;
use crate::pg::connect::ConnectParams;
use crate::pg::probe::{probe, text_select_list};
use crate::pg::scan::{self, PgPrepared};
use crate::pg::types::PgKind;
use crate::pg::wire::PgConnection;
use crate::pg::wire::conn::cancel;
use crate::session::{Canceller, Described, ScanOptions, Session, Wire};
use crate::source::{Overrides, wrap_select};
use crate::stream::{BatchSink, EndOfData};

/// A reusable PostgreSQL connection.
pub type PgSession = Session<PgConnection>;

impl Wire for PgConnection {
    type Target = ConnectParams;
    type Kind = PgKind;
    type Prepared = PgPrepared;

    fn open(params: &ConnectParams) -> Result<Self> {
        PgConnection::connect(params)
    }

    fn run_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        self.query(sql)
    }

    fn describe_query(
        &mut self,
        query: &str,
        overrides: &Overrides,
    ) -> Result<Described<PgColumn>> {
        let select_list = text_select_list(self, query, &overrides.text)?;
        let wrapped = select_list.as_deref().map(|l| wrap_select(l, query));
        let columns = probe(self, wrapped.as_deref().unwrap_or(query), overrides)?;
        Ok(Described {
            select_list,
            columns,
        })
    }

    fn origins(&mut self, query: &str) -> Result<Vec<Option<(String, String)>>> {
        let fields = self.describe(query)?;
        let known: Vec<String> = fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.table_oid != 0 && f.column_id > 0)
            .map(|(i, f)| format!("({i}, {}::oid, {}::int2)", f.table_oid, f.column_id))
            .collect();
        let mut out = vec![None; fields.len()];
        if known.is_empty() {
            return Ok(out);
        }
        // Tables, partitioned tables and materialized views keep statistics; views do not.
        let sql = format!(
            "SELECT v.n, quote_ident(s.nspname) || '.' || quote_ident(c.relname), a.attname \
             FROM (VALUES {}) AS v(n, oid, att) JOIN pg_class c ON c.oid = v.oid \
             JOIN pg_namespace s ON s.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = v.att \
             WHERE c.relkind IN ('r', 'p', 'm')",
            known.join(", ")
        );
        for row in self.query(&sql)? {
            if let (Some(Some(n)), Some(Some(relation)), Some(Some(column))) =
                (row.first(), row.get(1), row.get(2))
            {
                if let Some(slot) = n.parse::<usize>().ok().and_then(|n| out.get_mut(n)) {
                    *slot = Some((relation.clone(), column.clone()));
                }
            }
        }
        Ok(out)
    }

    fn prepare_scan(
        &mut self,
        sql: &str,
        _columns: &[PgColumn],
        options: &ScanOptions,
    ) -> Result<PgPrepared> {
        scan::prepare(self, sql, options)
    }

    fn stream(
        &mut self,
        prepared: PgPrepared,
        columns: Vec<PgColumn>,
        options: &ScanOptions,
        sink: &BatchSink,
    ) -> Result<EndOfData> {
        scan::stream(self, prepared, columns, options, sink)
    }

    fn canceller(&self, params: &Arc<ConnectParams>) -> Option<Canceller> {
        let key = self.cancel_key()?;
        let params = Arc::clone(params);
        Some(Box::new(move || {
            let _ = cancel(&params, &key);
        }))
    }
}
