//! `PgSession`: one reusable PostgreSQL connection for planning queries and chunk scans.

use std::collections::HashMap;

use pyo3::prelude::*;
use rivet_engine::pg::batch::arrow_schema;
use rivet_engine::pg::connect::PgConnectOptions;
use rivet_engine::pg::probe::Overrides;
use rivet_engine::pg::session::PgSession;

use crate::interrupt::run_interruptible;
use crate::reader::{PyArrowSchema, PyBatchReader};
use crate::sources::{PgConnectArgs, ScanArgs, finish};

/// A connection lent to one scan at a time; it reconnects after a broken scan.
#[pyclass(frozen, module = "rivet._native", name = "PgSession")]
pub struct PyPgSession {
    inner: PgSession,
}

fn overrides(decimal: HashMap<String, (u8, i8)>, text: Vec<String>) -> Overrides {
    Overrides { decimal, text }
}

#[pymethods]
impl PyPgSession {
    /// Connect (raising at once on bad settings or credentials).
    #[new]
    fn new(py: Python<'_>, conn: PgConnectArgs) -> PyResult<Self> {
        let options = PgConnectOptions::from(conn);
        let result = run_interruptible(py, move || PgSession::connect(&options))?;
        Ok(PyPgSession {
            inner: finish(py, result)?,
        })
    }

    /// Run SQL with the simple protocol; rows come back as tuples of text (or None).
    fn query(&self, py: Python<'_>, sql: String) -> PyResult<Vec<Vec<Option<String>>>> {
        let session = self.inner.clone();
        let result = run_interruptible(py, move || session.query(&sql))?;
        finish(py, result)
    }

    /// The exact Arrow schema of `query`.
    fn describe(
        &self,
        py: Python<'_>,
        query: String,
        decimal_overrides: HashMap<String, (u8, i8)>,
        text_overrides: Vec<String>,
    ) -> PyResult<PyArrowSchema> {
        let session = self.inner.clone();
        let o = overrides(decimal_overrides, text_overrides);
        let result = run_interruptible(py, move || session.describe(&query, &o))?;
        let columns = finish(py, result)?;
        Ok(PyArrowSchema {
            schema: arrow_schema(&columns),
        })
    }

    /// Stream `query` in a fresh read-only transaction; its columns are those of
    /// `describe_as` (described once per session), or of `query` itself.
    #[pyo3(signature = (query, describe_as, options, decimal_overrides, text_overrides))]
    fn scan(
        &self,
        py: Python<'_>,
        query: String,
        describe_as: Option<String>,
        options: ScanArgs,
        decimal_overrides: HashMap<String, (u8, i8)>,
        text_overrides: Vec<String>,
    ) -> PyResult<PyBatchReader> {
        let session = self.inner.clone();
        let o = overrides(decimal_overrides, text_overrides);
        let scan = options.pg_options()?;
        let result = run_interruptible(py, move || {
            session.scan(&query, describe_as.as_deref(), &o, scan)
        })?;
        finish(py, result).map(PyBatchReader::new)
    }
}
