//! Describing a query's result without running it: names, types, typmods.

use std::collections::{HashMap, HashSet};

use postgres::Client;

use crate::error::{Error, Result};
use crate::pg::batch::PgColumn;
use crate::pg::errors::query_error;
use crate::pg::types::map_column;

/// The export's `columns:` overrides that the PostgreSQL reader applies.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `decimal(p,s)` for numeric columns: decoded exactly, refusing values that do not fit.
    pub decimal: HashMap<String, (u8, i8)>,
    /// Columns read as their text form (`::text`), for types without an exact mapping.
    pub text: Vec<String>,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Rewrite `query` so the `text` override columns come back as `::text`, in their place.
pub fn apply_text_overrides(client: &mut Client, query: &str, text: &[String]) -> Result<String> {
    if text.is_empty() {
        return Ok(query.to_string());
    }
    let statement = client.prepare(query).map_err(|e| query_error(&e))?;
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    for name in text {
        if !names.contains(&name.as_str()) {
            return Err(Error::Config(format!(
                "columns: override for \"{name}\", but the query has no such column (it returns: {})",
                names.join(", ")
            )));
        }
    }
    let select: Vec<String> = names
        .iter()
        .map(|n| {
            let q = quote_ident(n);
            if text.iter().any(|t| t == n) {
                format!("_rivet.{q}::text AS {q}")
            } else {
                format!("_rivet.{q}")
            }
        })
        .collect();
    Ok(format!("SELECT {} FROM ({query}) AS _rivet", select.join(", ")))
}

/// Prepare `query` and map every result column, refusing all unsupported ones at once.
pub fn probe(client: &mut Client, query: &str, overrides: &Overrides) -> Result<Vec<PgColumn>> {
    let statement = client.prepare(query).map_err(|e| query_error(&e))?;
    let columns = statement.columns();
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();

    let mut seen = HashSet::new();
    for name in &names {
        if !seen.insert(*name) {
            return Err(Error::Config(format!(
                "the query returns two columns named \"{name}\"; give them distinct aliases"
            )));
        }
    }
    for name in overrides.decimal.keys() {
        if !seen.contains(name.as_str()) {
            return Err(Error::Config(format!(
                "columns: override for \"{name}\", but the query has no such column (it returns: {})",
                names.join(", ")
            )));
        }
    }

    let source_types = format_types(client, columns)?;
    let mut mapped = Vec::with_capacity(columns.len());
    let mut refused = Vec::new();
    for (column, source_type) in columns.iter().zip(source_types) {
        let name = column.name();
        match map_column(name, column.type_(), column.type_modifier(), overrides.decimal.get(name).copied()) {
            Ok(m) => mapped.push(PgColumn {
                name: name.to_string(),
                kind: m.kind,
                source_type,
                logical: m.logical,
            }),
            Err(mut u) => {
                u.source_type = source_type;
                refused.push(u);
            }
        }
    }
    if refused.is_empty() {
        Ok(mapped)
    } else {
        Err(Error::Unsupported(refused))
    }
}

/// The server's own names for the result types, typmods included (`numeric(15,2)`).
fn format_types(client: &mut Client, columns: &[postgres::Column]) -> Result<Vec<String>> {
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let oids: Vec<u32> = columns.iter().map(|c| c.type_().oid()).collect();
    let mods: Vec<i32> = columns.iter().map(|c| c.type_modifier()).collect();
    let rows = client
        .query(
            "SELECT format_type(t.oid, NULLIF(t.mod, -1)) \
             FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS t(oid, mod, n) ORDER BY t.n",
            &[&oids, &mods],
        )
        .map_err(|e| query_error(&e))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}
