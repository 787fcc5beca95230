//! The one mapping from engine errors to the Python exception tree in `rivet.errors`.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};
use rivet_engine::Error;

pyo3::import_exception!(rivet.errors, ConfigError);
pyo3::import_exception!(rivet.errors, SourceConnectionError);
pyo3::import_exception!(rivet.errors, QueryError);
pyo3::import_exception!(rivet.errors, UnsupportedTypeError);
pyo3::import_exception!(rivet.errors, DataError);
pyo3::import_exception!(rivet.errors, RivetError);
pyo3::import_exception!(rivet.errors, CancelledError);
pyo3::import_exception!(rivet.errors, IntegrityError);
pyo3::import_exception!(rivet.errors, InternalError);

fn build(cls: Bound<'_, PyType>, message: String, kwargs: Bound<'_, PyDict>) -> PyErr {
    match cls.call((message,), Some(&kwargs)) {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

/// Convert an engine error into the matching `rivet.errors` exception.
pub fn to_py_err(py: Python<'_>, e: Error) -> PyErr {
    let kwargs = PyDict::new(py);
    let message = e.to_string();
    let result: PyResult<PyErr> = (|| {
        Ok(match e {
            Error::Config(_) => build(py.get_type::<ConfigError>(), message, kwargs),
            Error::Connect { code, .. } => {
                kwargs.set_item("code", code)?;
                build(py.get_type::<SourceConnectionError>(), message, kwargs)
            }
            Error::ConnectionLost(_) => {
                kwargs.set_item("lost", true)?;
                build(py.get_type::<SourceConnectionError>(), message, kwargs)
            }
            Error::Query { code, .. } => {
                kwargs.set_item("code", code)?;
                build(py.get_type::<QueryError>(), message, kwargs)
            }
            Error::Unsupported(columns) => {
                let list = PyList::empty(py);
                for c in columns {
                    let d = PyDict::new(py);
                    d.set_item("column", c.column)?;
                    d.set_item("source_type", c.source_type)?;
                    d.set_item("hint", c.hint)?;
                    list.append(d)?;
                }
                kwargs.set_item("columns", list)?;
                build(py.get_type::<UnsupportedTypeError>(), message, kwargs)
            }
            Error::Decode { column, .. } => {
                kwargs.set_item("column", column)?;
                build(py.get_type::<DataError>(), message, kwargs)
            }
            Error::Interrupted => build(py.get_type::<CancelledError>(), message, kwargs),
            Error::Io(_) | Error::Internal(_) => {
                build(py.get_type::<RivetError>(), message, kwargs)
            }
            Error::Integrity(_) => build(py.get_type::<IntegrityError>(), message, kwargs),
        })
    })();
    result.unwrap_or_else(|err| err)
}
