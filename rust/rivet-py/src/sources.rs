//! Module functions that open, describe and stream the sources.

use std::collections::HashMap;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use rivet_engine::Error;
use rivet_engine::batch::BatchLimits;
use rivet_engine::conn::{ConnectOptions, Endpoint};
use rivet_engine::metadata::arrow_schema;
use rivet_engine::net::Channel;
use rivet_engine::session::{ReadMethod, ScanOptions};
use rivet_engine::source::Overrides;
use rivet_engine::sqlite::{SqliteFile, SqliteSession};
use rivet_engine::tls::TlsSettings;

use crate::errors::to_py_err;
use crate::interrupt::run_interruptible;
use crate::reader::{PyArrowSchema, PyBatchReader};

/// Connection settings as a dict with every key present (built by `rivet.sources`).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct ConnectArgs {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    database: Option<String>,
    tls_mode: Option<String>,
    ca_file: Option<String>,
    accept_invalid_certs: bool,
    accept_invalid_hostnames: bool,
    connect_timeout_s: f64,
    read_timeout_s: Option<f64>,
    allow_unverified_password: bool,
    channel_binding: Option<String>,
    dial_host: Option<String>,
    dial_port: Option<u16>,
}

impl From<ConnectArgs> for ConnectOptions {
    fn from(a: ConnectArgs) -> Self {
        ConnectOptions {
            url: a.url,
            host: a.host,
            port: a.port,
            user: a.user,
            password: a.password,
            database: a.database,
            tls_mode: a.tls_mode,
            ca_file: a.ca_file,
            accept_invalid_certs: a.accept_invalid_certs,
            accept_invalid_hostnames: a.accept_invalid_hostnames,
            connect_timeout: Some(Duration::from_secs_f64(a.connect_timeout_s.max(0.001))),
            read_timeout: a
                .read_timeout_s
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64),
            allow_unverified_password: a.allow_unverified_password,
            channel_binding: a.channel_binding,
            dial: a.dial_host.zip(a.dial_port),
        }
    }
}

/// Reader options as a dict with every key present.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct ScanArgs {
    method: String,
    batch_rows: usize,
    batch_bytes: usize,
    statement_timeout_ms: u64,
    lock_timeout_ms: u64,
    throttle_ms: u64,
    snapshot: Option<String>,
    prefetch: usize,
    reconcile: bool,
}

impl ScanArgs {
    /// The scan options these arguments describe.
    pub fn options(self) -> PyResult<ScanOptions> {
        let method = match self.method.as_str() {
            "cursor" => ReadMethod::Cursor,
            "copy" => ReadMethod::Copy,
            other => {
                return Err(crate::errors::ConfigError::new_err(format!(
                    "unknown read method '{other}'"
                )));
            }
        };
        Ok(ScanOptions {
            method,
            limits: BatchLimits::new(self.batch_rows, self.batch_bytes)
                .map_err(|e| crate::errors::ConfigError::new_err(e.to_string()))?,
            statement_timeout_ms: self.statement_timeout_ms,
            lock_timeout_ms: self.lock_timeout_ms,
            throttle_ms: self.throttle_ms,
            snapshot: self.snapshot,
            prefetch: self.prefetch,
            reconcile: self.reconcile,
        })
    }
}

/// Turn an engine result into a Python one.
pub fn finish<T>(py: Python<'_>, r: Result<T, Error>) -> PyResult<T> {
    r.map_err(|e| to_py_err(py, e))
}

/// Where a connection would go, resolved from the URL, the fields and the environment as a
/// connect would, without connecting: host, port, user, database, TLS mode, whether TLS would
/// prove the server (`tls_verified`), whether it is a Unix socket and whether a password is
/// given; never the password.
#[pyfunction]
pub fn connection_target<'py>(
    py: Python<'py>,
    kind: &str,
    conn: ConnectArgs,
) -> PyResult<Bound<'py, PyDict>> {
    let options = ConnectOptions::from(conn);
    let target = match kind {
        "postgres" => options
            .resolve_postgres()
            .map(|p| target_of(Some(p.protocol.database.clone()), p)),
        "mysql" => options
            .resolve_mysql()
            .map(|p| target_of(p.protocol.database.clone(), p)),
        other => Err(Error::Config(format!(
            "no network source of kind '{other}'"
        ))),
    };
    let (host, port, user, database, tls, has_password) = finish(py, target)?;
    let out = PyDict::new(py);
    out.set_item("unix_socket", host.starts_with('/'))?;
    out.set_item("host", host)?;
    out.set_item("port", port)?;
    out.set_item("user", user)?;
    out.set_item("database", database)?;
    out.set_item("tls_mode", tls.mode.name())?;
    out.set_item("tls_verified", tls.verifies())?;
    out.set_item("has_password", has_password)?;
    Ok(out)
}

/// The URL connectorx connects with, written from the settings a connect would resolve; None
/// where its driver could not connect as rivet's reader would. `channel` is how rivet's own
/// connection travelled (a MySQL `prefer` then asks for that); `statement_timeout_ms` limits
/// each PostgreSQL statement.
#[pyfunction]
#[pyo3(signature = (kind, conn, channel=None, statement_timeout_ms=None))]
pub fn connectorx_url(
    py: Python<'_>,
    kind: &str,
    conn: ConnectArgs,
    channel: Option<&str>,
    statement_timeout_ms: Option<u64>,
) -> PyResult<Option<String>> {
    let options = ConnectOptions::from(conn);
    let channel = [
        Channel::Unix,
        Channel::Plain,
        Channel::TlsUnverified,
        Channel::TlsVerified,
    ]
    .into_iter()
    .find(|c| Some(c.name()) == channel);
    let url = match kind {
        "postgres" => options
            .resolve_postgres()
            .map(|p| Some(p.driver_url(statement_timeout_ms))),
        "mysql" => options.resolve_mysql().map(|p| p.driver_url(channel)),
        other => Err(Error::Config(format!(
            "no network source of kind '{other}'"
        ))),
    };
    finish(py, url)
}

/// Where an endpoint connects: host, port, user, database, TLS, and whether it has a password.
type Target = (String, u16, String, Option<String>, TlsSettings, bool);

fn target_of<P>(database: Option<String>, p: Endpoint<P>) -> Target {
    let has_password = p.password.as_deref().is_some_and(|s| !s.is_empty());
    (p.host, p.port, p.user, database, p.tls, has_password)
}

/// `columns:` type names as overrides of a SQLite file's declared types.
fn sqlite_overrides(types: HashMap<String, String>) -> Overrides {
    Overrides {
        types,
        ..Overrides::default()
    }
}

/// Start streaming a SQLite query.
#[pyfunction]
pub fn scan_sqlite(
    py: Python<'_>,
    path: String,
    query: String,
    options: ScanArgs,
    type_overrides: HashMap<String, String>,
) -> PyResult<PyBatchReader> {
    let options = options.options()?;
    let result = run_interruptible(py, move || {
        SqliteSession::open(SqliteFile { path })?.scan(
            &query,
            None,
            &sqlite_overrides(type_overrides),
            options,
        )
    })?;
    finish(py, result).map(PyBatchReader::new)
}

/// Describe a SQLite query's result as an Arrow schema.
#[pyfunction]
pub fn describe_sqlite(
    py: Python<'_>,
    path: String,
    query: String,
    type_overrides: HashMap<String, String>,
) -> PyResult<PyArrowSchema> {
    let result = run_interruptible(py, move || {
        SqliteSession::open(SqliteFile { path })?
            .describe(&query, &sqlite_overrides(type_overrides))
    })?;
    let columns = finish(py, result)?;
    Ok(PyArrowSchema {
        schema: arrow_schema(&columns),
    })
}
