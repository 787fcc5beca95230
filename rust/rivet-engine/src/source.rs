//! What every source takes from an export besides where to connect (`conn`): the `columns:`
//! overrides its reader applies, and query wrapping.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The export's `columns:` overrides.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `decimal(p,s)` for decimal columns: decoded exactly, refusing values that do not fit.
    pub decimal: HashMap<String, (u8, i8)>,
    /// Columns read as the server prints them (`::text`, `CAST(... AS CHAR)`), for types
    /// without an exact mapping.
    pub text: Vec<String>,
    /// Type names for columns whose values carry no type of their own (SQLite's declared
    /// types, or expressions that have none).
    pub types: HashMap<String, String>,
}

/// Strip what would break wrapping the query: trailing semicolons and blanks.
pub fn clean_query(query: &str) -> &str {
    query.trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

/// `SELECT <list> FROM (<query>) AS _rivet`.
pub fn wrap_select(list: &str, query: &str) -> String {
    format!("SELECT {list} FROM ({query}) AS _rivet")
}

/// Refuse a result with two columns of one name, and overrides of columns it lacks.
pub fn check_result_columns(names: &[&str], overrides: &Overrides) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(**n)) {
        return Err(Error::Config(format!(
            "the query returns two columns named \"{dup}\"; give them distinct aliases"
        )));
    }
    if let Some(missing) = overrides
        .text
        .iter()
        .chain(overrides.decimal.keys())
        .chain(overrides.types.keys())
        .find(|k| !seen.contains(k.as_str()))
    {
        return Err(Error::Config(format!(
            "columns: override for \"{missing}\", but the query has no such column (it returns: {})",
            names.join(", ")
        )));
    }
    Ok(())
}
