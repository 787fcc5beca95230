//! `PgSession` and `MySession`: one reusable connection each, for planning queries and chunk scans.
//!
//! Both classes expose the same four methods over their engine's session; one macro
//! writes them so the GIL release, interruption and error mapping stay identical.

use std::collections::HashMap;

use pyo3::prelude::*;

use crate::interrupt::run_interruptible;
use crate::reader::{PyArrowSchema, PyBatchReader};
use rivet_engine::conn::ConnectOptions;
use rivet_engine::metadata::arrow_schema;
use rivet_engine::source::Overrides;

use crate::sources::{ConnectArgs, ScanArgs, finish};

macro_rules! session_class {
    (
        $(#[$doc:meta])*
        $py:ident, $name:literal, $session:ty
    ) => {
        $(#[$doc])*
        #[pyclass(frozen, module = "rivet._native", name = $name)]
        pub struct $py {
            inner: $session,
        }

        #[pymethods]
        impl $py {
            /// Connect (raising at once on bad settings or credentials).
            #[new]
            fn new(py: Python<'_>, conn: ConnectArgs) -> PyResult<Self> {
                let options = ConnectOptions::from(conn);
                let result = run_interruptible(py, move || <$session>::connect(&options))?;
                Ok($py {
                    inner: finish(py, result)?,
                })
            }

            /// How the connection travels: `plaintext`, `tls-unverified`, `tls-verified` or `unix-socket`.
            #[getter]
            fn channel(&self) -> &'static str {
                self.inner.channel().name()
            }

            /// Run one SQL statement; rows come back as lists of text (or None).
            fn query(&self, py: Python<'_>, sql: String) -> PyResult<Vec<Vec<Option<String>>>> {
                let session = self.inner.clone();
                let result = run_interruptible(py, move || session.query(&sql))?;
                finish(py, result)
            }

            /// For each result column of `query`, `(table, column)` of the base column it reads, or None.
            fn origins(&self, py: Python<'_>, query: String) -> PyResult<Vec<Option<(String, String)>>> {
                let session = self.inner.clone();
                let result = run_interruptible(py, move || session.origins(&query))?;
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
                let o = Overrides {
                    decimal: decimal_overrides,
                    text: text_overrides,
                    ..Overrides::default()
                };
                let result = run_interruptible(py, move || session.describe(&query, &o))?;
                let columns = finish(py, result)?;
                Ok(PyArrowSchema {
                    schema: arrow_schema(&columns),
                })
            }

            /// Stream `query`; its columns are those of `describe_as` (described once per
            /// session), or of `query` itself.
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
                let o = Overrides {
                    decimal: decimal_overrides,
                    text: text_overrides,
                    ..Overrides::default()
                };
                let scan = options.options()?;
                let result = run_interruptible(py, move || {
                    session.scan(&query, describe_as.as_deref(), &o, scan)
                })?;
                finish(py, result).map(PyBatchReader::new)
            }
        }
    };
}

mod pg {
    use super::*;
    use rivet_engine::pg::session::PgSession;

    session_class!(
        /// A PostgreSQL connection lent to one scan at a time (each in a fresh read-only
        /// transaction); it reconnects after a broken scan.
        PyPgSession, "PgSession", PgSession
    );
}

mod my {
    use super::*;
    use rivet_engine::mysql::session::MySession;

    session_class!(
        /// A MySQL/MariaDB connection lent to one scan (one streamed statement) at a time;
        /// it reconnects after a broken scan.
        PyMySession, "MySession", MySession
    );
}

pub use my::PyMySession;
pub use pg::PyPgSession;
