//! `MySession`: one reusable MySQL/MariaDB connection for planning queries and scans.

use std::collections::HashMap;

use pyo3::prelude::*;
use rivet_engine::mysql::connect::MyConnectOptions;
use rivet_engine::mysql::session::{MyOverrides, MySession};
use rivet_engine::mysql::types::arrow_schema;

use crate::interrupt::run_interruptible;
use crate::reader::{PyArrowSchema, PyBatchReader};
use crate::sources::{PgConnectArgs, ScanArgs, finish};

/// A connection lent to one scan at a time; it reconnects after a broken scan.
#[pyclass(frozen, module = "rivet._native", name = "MySession")]
pub struct PyMySession {
    inner: MySession,
}

fn overrides(decimal: HashMap<String, (u8, i8)>, text: Vec<String>) -> MyOverrides {
    MyOverrides { decimal, text }
}

#[pymethods]
impl PyMySession {
    /// Connect (raising at once on bad settings or credentials).
    #[new]
    fn new(py: Python<'_>, conn: PgConnectArgs) -> PyResult<Self> {
        let options = MyConnectOptions::from(conn);
        let result = run_interruptible(py, move || MySession::connect(&options))?;
        Ok(PyMySession {
            inner: finish(py, result)?,
        })
    }

    /// Run SQL with the text protocol; rows come back as lists of text (or None).
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

    /// Stream `query` (one statement); its columns are those of `describe_as`, or its own.
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
        let scan = options.my_options()?;
        let result = run_interruptible(py, move || {
            session.scan(&query, describe_as.as_deref(), &o, scan)
        })?;
        finish(py, result).map(PyBatchReader::new)
    }
}
