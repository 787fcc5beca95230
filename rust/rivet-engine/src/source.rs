//! What the network sources (PostgreSQL, MySQL/MariaDB) take from an export: where to
//! connect, and the `columns:` overrides their readers apply.

use std::collections::HashMap;
use std::time::Duration;

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
