//! Describing a query's result without running it: names, types, typmods.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::pg::batch::PgColumn;
use crate::pg::catalog::{format_types, resolve_types};
use crate::pg::types::map_column;
use crate::pg::wire::PgConnection;
use crate::source::{Overrides, check_result_columns};

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The select list that casts the `text` override columns of `query` (`None` without any).
pub fn text_select_list(
    conn: &mut PgConnection,
    query: &str,
    text: &[String],
) -> Result<Option<String>> {
    if text.is_empty() {
        return Ok(None);
    }
    let fields = conn.describe(query)?;
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
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
    Ok(Some(select.join(", ")))
}

/// Describe `query` and map every result column, refusing all unsupported ones at once.
pub fn probe(conn: &mut PgConnection, query: &str, overrides: &Overrides) -> Result<Vec<PgColumn>> {
    let fields = conn.describe(query)?;
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    check_result_columns(&names, overrides)?;
    let oids: Vec<u32> = fields
        .iter()
        .map(|f| f.type_oid)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let types = resolve_types(conn, &oids)?;
    let source_types = format_types(conn, &fields)?;
    let mut mapped = Vec::with_capacity(fields.len());
    let mut refused = Vec::new();
    for (field, source_type) in fields.iter().zip(source_types) {
        let ty = &types[&field.type_oid];
        match map_column(
            &field.name,
            ty,
            field.typmod,
            overrides.decimal.get(&field.name).copied(),
        ) {
            Ok(m) => mapped.push(PgColumn {
                name: field.name.clone(),
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
