//! Module functions that open, describe and stream the sources.

use std::collections::HashMap;
use std::time::Duration;

use pyo3::prelude::*;
use rivet_engine::batch::BatchLimits;
use rivet_engine::session::{ReadMethod, ScanOptions};
use rivet_engine::source::ConnectOptions;
use rivet_engine::{Error, sqlite};

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
/// connect would, without connecting: `(host, port, user, database, tls_mode)`; never the password.
#[pyfunction]
pub fn connection_target(
    py: Python<'_>,
    kind: &str,
    conn: ConnectArgs,
) -> PyResult<(String, u16, String, Option<String>, &'static str)> {
    let options = ConnectOptions::from(conn);
    let target = match kind {
        "postgres" => options
            .resolve_postgres()
            .map(|p| (p.host, p.port, p.user, Some(p.database), p.tls.mode.name())),
        "mysql" => options
            .resolve_mysql()
            .map(|p| (p.host, p.port, p.user, p.database, p.tls.mode.name())),
        other => Err(Error::Config(format!(
            "no network source of kind '{other}'"
        ))),
    };
    finish(py, target)
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
        sqlite::open(
            &path,
            &query,
            &type_overrides,
            options.limits,
            options.prefetch,
            options.reconcile,
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
    let result = run_interruptible(py, move || sqlite::describe(&path, &query, &type_overrides))?;
    let columns = finish(py, result)?;
    Ok(PyArrowSchema {
        schema: sqlite::arrow_schema(&columns),
    })
}
