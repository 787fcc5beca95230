//! Where every reader cuts its rows into batches.
//!
//! The cut is decided before each row, from the row's size on the wire: a batch
//! never holds more than `max_rows` rows, and never more than `max_bytes` bytes
//! unless it is a single row. So no Arrow builder can reach its 2 GiB offset
//! limit, whatever the sizes of earlier rows suggested.

use arrow_array::RecordBatch;

use crate::error::{Error, Result};
use crate::stream::BatchSink;

/// The largest byte budget of one batch. A single value is at most 1 GiB on every
/// source, so a batch under this limit plus one row stays below Arrow's 2 GiB offsets.
pub const MAX_BATCH_BYTES: usize = 1 << 30;

/// Rows and bytes at which a batch is handed over.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most rows in one batch.
    pub max_rows: usize,
    /// Most bytes (of source values) in one batch of more than one row.
    pub max_bytes: usize,
}

impl BatchLimits {
    /// Limits of `max_rows` rows and `max_bytes` bytes (capped at [`MAX_BATCH_BYTES`]).
    pub fn new(max_rows: usize, max_bytes: usize) -> Result<Self> {
        if max_rows == 0 || max_bytes == 0 {
            return Err(Error::Config(
                "batch_rows and batch_bytes must be positive".into(),
            ));
        }
        Ok(BatchLimits {
            max_rows,
            max_bytes: max_bytes.min(MAX_BATCH_BYTES),
        })
    }
}

/// How much the batch being built holds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fill {
    /// Rows in the current batch.
    pub rows: usize,
    /// Source bytes in the current batch.
    pub bytes: usize,
}

/// Rows being accumulated into a batch.
pub trait RowBatch {
    /// How much the current batch holds.
    fn fill(&self) -> Fill;
    /// Take the current rows as a batch.
    fn finish(&mut self) -> Result<RecordBatch>;
}

/// Before a row of `incoming` bytes is added: hand the batch over if the row would
/// push it past a limit.
#[inline]
pub fn make_room<B: RowBatch>(
    batch: &mut B,
    incoming: usize,
    limits: &BatchLimits,
    sink: &BatchSink,
) -> Result<()> {
    let Fill { rows, bytes } = batch.fill();
    if rows > 0 && (rows >= limits.max_rows || bytes + incoming > limits.max_bytes) {
        sink.send(batch.finish()?)?;
    }
    Ok(())
}

/// At the end of the data, or of one server round trip: hand over what is left.
pub fn flush<B: RowBatch>(batch: &mut B, sink: &BatchSink) -> Result<()> {
    if batch.fill().rows > 0 {
        sink.send(batch.finish()?)?;
    }
    Ok(())
}
