//! What the network sources (PostgreSQL, MySQL/MariaDB) take from an export: where to
//! connect, and the `columns:` overrides their readers apply.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, Result};

/// Everything needed to open a connection. Structured fields override the URL; each
/// reader resolves them (`pg::connect`, `mysql::connect`).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `postgresql://...` (or libpq `key=value`) or `mysql://...`.
    pub url: Option<String>,
    /// Host name, IP address, or a Unix socket (directory for PostgreSQL, file for MySQL).
    pub host: Option<String>,
    /// TCP port.
    pub port: Option<u16>,
    /// User (role) name.
    pub user: Option<String>,
    /// Password (never logged).
    pub password: Option<String>,
    /// Database name.
    pub database: Option<String>,
    /// TLS mode (disable, prefer, require, verify-ca, verify-full); when absent, the URL's.
    pub tls_mode: Option<String>,
    /// PEM CA bundle (`sslrootcert` / `ssl-ca` in a URL).
    pub ca_file: Option<String>,
    /// Accept certificates that do not chain to a trusted root.
    pub accept_invalid_certs: bool,
    /// Accept certificates issued for another host name.
    pub accept_invalid_hostnames: bool,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
}

/// The export's `columns:` overrides.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `decimal(p,s)` for decimal columns: decoded exactly, refusing values that do not fit.
    pub decimal: HashMap<String, (u8, i8)>,
    /// Columns read as the server prints them (`::text`, `CAST(... AS CHAR)`), for types
    /// without an exact mapping.
    pub text: Vec<String>,
}

/// A URL component with its `%XX` escapes decoded (as UTF-8).
pub fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::Config("invalid percent-encoding in the connection URL".into())
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::Config("the connection URL is not valid UTF-8".into()))
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
        .find(|k| !seen.contains(k.as_str()))
    {
        return Err(Error::Config(format!(
            "columns: override for \"{missing}\", but the query has no such column (it returns: {})",
            names.join(", ")
        )));
    }
    Ok(())
}
