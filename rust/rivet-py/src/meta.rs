//! Meta columns appended to a batch on its way to the writer.

use pyo3::prelude::*;
use rivet_engine::{rowhash, uuids};

use crate::arrow_ffi::import_batch;
use crate::errors::to_py_err;
use crate::reader::PyArrowBatch;

/// `batch` with `_rivet_exported_at` (when `exported_at_us` is given) and
/// `_rivet_row_hash` (when `row_hash`) appended; the hashing runs without the GIL.
#[pyfunction]
#[pyo3(signature = (batch, exported_at_us, row_hash))]
pub fn with_meta_columns(
    py: Python<'_>,
    batch: &Bound<'_, PyAny>,
    exported_at_us: Option<i64>,
    row_hash: bool,
) -> PyResult<PyArrowBatch> {
    let batch = import_batch(batch)?;
    py.detach(|| rowhash::with_meta_columns(&batch, exported_at_us, row_hash))
        .map(PyArrowBatch::from)
        .map_err(|e| to_py_err(py, e))
}

/// Every column of `batch` (the canonical text of UUIDs) as their 16 bytes, NULLs kept: what
/// Parquet's UUID type holds. A value that is not a UUID raises, naming its column.
#[pyfunction]
pub fn uuids_as_bytes(py: Python<'_>, batch: &Bound<'_, PyAny>) -> PyResult<PyArrowBatch> {
    let batch = import_batch(batch)?;
    py.detach(|| uuids::text_to_uuid_bytes(&batch))
        .map(PyArrowBatch::from)
        .map_err(|e| to_py_err(py, e))
}
