//! Arrow crossing into Python through the PyCapsule interface, never raw pointers.

use std::ffi::CStr;
use std::sync::Arc;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader, StructArray};
use arrow_schema::{ArrowError, Field, SchemaRef};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::errors::InternalError;

const SCHEMA: &CStr = c"arrow_schema";
const ARRAY: &CStr = c"arrow_array";
const STREAM: &CStr = c"arrow_array_stream";

/// A schema as an `arrow_schema` capsule.
pub fn schema_capsule<'py>(py: Python<'py>, schema: &SchemaRef) -> PyResult<Bound<'py, PyCapsule>> {
    let ffi = FFI_ArrowSchema::try_from(schema.as_ref())
        .map_err(|e| InternalError::new_err(format!("exporting the schema failed: {e}")))?;
    PyCapsule::new_with_value(py, ffi, SCHEMA)
}

/// A record batch as an (`arrow_schema`, `arrow_array`) capsule pair of a struct array.
pub fn batch_capsules<'py>(
    py: Python<'py>,
    batch: &RecordBatch,
) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
    let data = StructArray::from(batch.clone()).into_data();
    let (array, schema) = to_ffi(&data)
        .map_err(|e| InternalError::new_err(format!("exporting a batch failed: {e}")))?;
    Ok((
        PyCapsule::new_with_value(py, schema, SCHEMA)?,
        PyCapsule::new_with_value(py, array, ARRAY)?,
    ))
}

/// One column as an (`arrow_schema`, `arrow_array`) capsule pair with a release of its
/// own: a consumer that keeps this column keeps only its buffers.
pub fn column_capsules<'py>(
    py: Python<'py>,
    field: &Field,
    array: &ArrayRef,
) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
    let schema = FFI_ArrowSchema::try_from(field).map_err(|e| {
        InternalError::new_err(format!("exporting column {} failed: {e}", field.name()))
    })?;
    Ok((
        PyCapsule::new_with_value(py, schema, SCHEMA)?,
        PyCapsule::new_with_value(py, FFI_ArrowArray::new(&array.to_data()), ARRAY)?,
    ))
}

/// A record batch taken from any Python object with `__arrow_c_array__` (a pyarrow
/// `RecordBatch`, say). The array is moved out of its capsule, which is left released.
pub fn import_batch(object: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    let pair = object.call_method0("__arrow_c_array__")?;
    let pair = pair.cast::<PyTuple>()?;
    let schema = pair.get_item(0)?;
    let schema = schema.cast::<PyCapsule>()?;
    let array = pair.get_item(1)?;
    let array = array.cast::<PyCapsule>()?;
    let schema_ptr = schema
        .pointer_checked(Some(SCHEMA))?
        .cast::<FFI_ArrowSchema>();
    let array_ptr = array.pointer_checked(Some(ARRAY))?.cast::<FFI_ArrowArray>();
    // SAFETY: the capsules are named as the PyCapsule interface requires, so they hold
    // these C structs; `from_raw` moves the array out and marks the capsule's released,
    // so its destructor does not free what the batch now owns.
    #[allow(unsafe_code)]
    let data = unsafe {
        let owned = FFI_ArrowArray::from_raw(array_ptr.as_ptr());
        from_ffi(owned, schema_ptr.as_ref())
    }
    .map_err(|e| InternalError::new_err(format!("importing a batch failed: {e}")))?;
    if !matches!(data.data_type(), arrow_schema::DataType::Struct(_)) {
        return Err(InternalError::new_err(
            "expected a record batch (a struct array)",
        ));
    }
    Ok(RecordBatch::from(StructArray::from(data)))
}

/// A batch reader as an `arrow_array_stream` capsule.
pub fn stream_capsule<'py>(
    py: Python<'py>,
    reader: Box<dyn RecordBatchReader + Send>,
) -> PyResult<Bound<'py, PyCapsule>> {
    PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(reader), STREAM)
}

/// Adapts a pull function into a `RecordBatchReader`.
pub struct PullReader<F> {
    /// Schema of every batch.
    pub schema: SchemaRef,
    /// Next batch, `None` at the end.
    pub pull: F,
}

impl<F> Iterator for PullReader<F>
where
    F: FnMut() -> Result<Option<RecordBatch>, ArrowError>,
{
    type Item = Result<RecordBatch, ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        (self.pull)().transpose()
    }
}

impl<F> RecordBatchReader for PullReader<F>
where
    F: FnMut() -> Result<Option<RecordBatch>, ArrowError>,
{
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}
