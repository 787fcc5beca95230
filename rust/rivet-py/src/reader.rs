//! `BatchReader`: the Python face of a background read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, FieldRef, SchemaRef};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};
use rivet_engine::views::text_as_views;
use rivet_engine::{BatchStream, EndOfData, Poll};

use crate::arrow_ffi::{
    PullReader, batch_capsules, column_capsules, schema_capsule, stream_capsule,
};
use crate::errors::{InternalError, to_py_err};
use crate::interrupt::SIGNAL_POLL;

/// How long a cancelled read may take to stop its statement on the server.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A consume-once stream of bounded record batches decoded on a background thread.
#[pyclass(frozen, module = "rivet._native", name = "BatchReader")]
pub struct PyBatchReader {
    schema: SchemaRef,
    stream: Arc<Mutex<Option<BatchStream>>>,
    cancelled: Arc<AtomicBool>,
    delivered: AtomicU64,
    end: OnceLock<EndOfData>,
}

impl PyBatchReader {
    /// Wrap a started stream.
    pub fn new(stream: BatchStream) -> Self {
        PyBatchReader {
            schema: stream.schema(),
            cancelled: stream.cancel_handle(),
            stream: Arc::new(Mutex::new(Some(stream))),
            delivered: AtomicU64::new(0),
            end: OnceLock::new(),
        }
    }

    fn with_stream<T>(
        &self,
        f: impl FnOnce(&mut Option<BatchStream>) -> PyResult<T>,
    ) -> PyResult<T> {
        // Never block on the lock while attached: another thread holding it may need the GIL.
        match self.stream.try_lock() {
            Ok(mut guard) => f(&mut guard),
            Err(TryLockError::WouldBlock) => Err(InternalError::new_err(
                "this reader is being read by another thread",
            )),
            Err(TryLockError::Poisoned(_)) => {
                Err(InternalError::new_err("this reader failed earlier"))
            }
        }
    }
}

#[pymethods]
impl PyBatchReader {
    /// The schema, as an `arrow_schema` capsule.
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        schema_capsule(py, &self.schema)
    }

    /// The next batch, or `None` at the end. Waits without the GIL and raises
    /// `KeyboardInterrupt` within a fraction of a second of Ctrl-C.
    fn next_batch(&self, py: Python<'_>) -> PyResult<Option<PyArrowBatch>> {
        self.with_stream(|slot| {
            let Some(stream) = slot.as_mut() else {
                return Ok(None);
            };
            loop {
                match py.detach(|| stream.poll(SIGNAL_POLL)) {
                    Poll::Batch(batch) => {
                        self.delivered
                            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                        return Ok(Some(PyArrowBatch { batch }));
                    }
                    Poll::Done(end) => {
                        let _ = self.end.set(end);
                        *slot = None;
                        return Ok(None);
                    }
                    Poll::Failed(e) => {
                        *slot = None;
                        return Err(to_py_err(py, e));
                    }
                    Poll::Pending => {
                        if let Err(e) = py.check_signals() {
                            // Let the reader stop the statement on the server before we go.
                            py.detach(|| stream.cancel_and_wait(STOP_WAIT));
                            *slot = None;
                            return Err(e);
                        }
                    }
                }
            }
        })
    }

    /// Hand the remaining batches to any Arrow consumer (`pyarrow.RecordBatchReader.from_stream`).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let stream = self
            .with_stream(|slot| Ok(slot.take()))?
            .ok_or_else(|| InternalError::new_err("this reader was already consumed"))?;
        let mut stream = stream;
        let pull = move || -> Result<Option<RecordBatch>, ArrowError> {
            stream
                .next_blocking()
                .map_err(|e| ArrowError::ExternalError(Box::new(e)))
        };
        stream_capsule(
            py,
            Box::new(PullReader {
                schema: Arc::clone(&self.schema),
                pull,
            }),
        )
    }

    /// Ask the read to stop, from any thread, even while another thread waits in
    /// `next_batch` (which then raises).
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Stop reading; the background thread ends at its next batch boundary (having asked
    /// the server to stop the statement, when it was still running).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.with_stream(|slot| {
            if let Some(mut s) = slot.take() {
                py.detach(|| s.cancel_and_wait(STOP_WAIT));
            }
            Ok(())
        })
    }

    /// Rows handed to Python by `next_batch` so far.
    #[getter]
    fn rows_read(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Whether the end-of-data marker arrived (every row was delivered).
    #[getter]
    fn finished(&self) -> bool {
        self.end.get().is_some()
    }

    /// Rows the server reported sending, once the stream has ended (else `None`).
    #[getter]
    fn server_rows(&self) -> Option<u64> {
        self.end.get().map(|e| e.server_rows)
    }

    /// Rows a `COUNT(*)` found in the scan's snapshot (scans with `reconcile`), once ended.
    #[getter]
    fn expected_rows(&self) -> Option<u64> {
        self.end.get().and_then(|e| e.expected_rows)
    }
}

/// One record batch, exported through `__arrow_c_array__`.
#[pyclass(frozen, module = "rivet._native", name = "ArrowBatch")]
pub struct PyArrowBatch {
    batch: RecordBatch,
}

impl From<RecordBatch> for PyArrowBatch {
    fn from(batch: RecordBatch) -> Self {
        PyArrowBatch { batch }
    }
}

#[pymethods]
impl PyArrowBatch {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema;
        let (schema, array) = batch_capsules(py, &self.batch)?;
        PyTuple::new(py, [schema.into_any(), array.into_any()])
    }

    /// Number of rows.
    #[getter]
    fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Each column on its own. Imported as one batch, every column shares one release,
    /// so a consumer that keeps some columns without copying (polars does) keeps the
    /// whole batch's memory; imported one by one, a copied column is freed at once.
    /// With `text_views`, text columns come as `Utf8View` over the same bytes (the
    /// layout polars holds), so nothing of them is converted or kept twice.
    #[pyo3(signature = (text_views=false))]
    fn columns(&self, text_views: bool) -> Vec<PyArrowColumn> {
        let schema = self.batch.schema();
        (schema.fields().iter().zip(self.batch.columns()))
            .map(
                |(field, array)| match text_views.then(|| text_as_views(array)).flatten() {
                    Some(views) => PyArrowColumn {
                        field: Arc::new(
                            field
                                .as_ref()
                                .clone()
                                .with_data_type(views.data_type().clone()),
                        ),
                        array: views,
                    },
                    None => PyArrowColumn {
                        field: field.clone(),
                        array: array.clone(),
                    },
                },
            )
            .collect()
    }
}

/// One column of a batch, exported through `__arrow_c_array__` with its own release.
#[pyclass(frozen, module = "rivet._native", name = "ArrowColumn")]
pub struct PyArrowColumn {
    field: FieldRef,
    array: ArrayRef,
}

#[pymethods]
impl PyArrowColumn {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema;
        let (schema, array) = column_capsules(py, &self.field, &self.array)?;
        PyTuple::new(py, [schema.into_any(), array.into_any()])
    }
}

/// A schema, exported through `__arrow_c_schema__`.
#[pyclass(frozen, module = "rivet._native", name = "ArrowSchema")]
pub struct PyArrowSchema {
    /// The schema.
    pub schema: SchemaRef,
}

#[pymethods]
impl PyArrowSchema {
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        schema_capsule(py, &self.schema)
    }
}
