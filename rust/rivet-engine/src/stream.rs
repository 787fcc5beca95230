//! A bounded stream of record batches produced on a background thread.
//!
//! The reader decodes the next batches while the consumer encodes and writes
//! the previous ones; the channel depth bounds memory. Dropping the stream
//! cancels the producer, which stops at its next batch boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::error::{Error, Result};

/// Where a producer sends its batches.
pub struct BatchSink {
    tx: Sender<Result<RecordBatch>>,
    cancelled: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
}

impl BatchSink {
    /// Hand a batch to the consumer, waiting while the channel is full.
    /// Fails with [`Error::Interrupted`] once the consumer has gone away.
    pub fn send(&self, batch: RecordBatch) -> Result<()> {
        self.check()?;
        let n = batch.num_rows() as u64;
        self.tx.send(Ok(batch)).map_err(|_| Error::Interrupted)?;
        self.rows.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// The flag that is set when the consumer cancels or goes away.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancelled)
    }

    /// Fails with [`Error::Interrupted`] if the read was cancelled.
    pub fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }
}

/// What one poll of the stream returned.
pub enum Poll {
    /// The next batch.
    Batch(RecordBatch),
    /// The producer failed; the stream is finished.
    Failed(Error),
    /// All batches were delivered.
    Done,
    /// Nothing arrived within the timeout; poll again.
    Pending,
}

/// The consumer side of a background read.
pub struct BatchStream {
    schema: SchemaRef,
    rx: Receiver<Result<RecordBatch>>,
    cancelled: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
    finished: bool,
}

impl BatchStream {
    /// Start `produce` on its own thread. `depth` batches may wait in the channel.
    pub fn spawn<F>(schema: SchemaRef, depth: usize, produce: F) -> Self
    where
        F: FnOnce(&BatchSink) -> Result<()> + Send + 'static,
    {
        let (tx, rx) = bounded(depth.max(1));
        let cancelled = Arc::new(AtomicBool::new(false));
        let rows = Arc::new(AtomicU64::new(0));
        let sink = BatchSink {
            tx,
            cancelled: Arc::clone(&cancelled),
            rows: Arc::clone(&rows),
        };
        thread::Builder::new()
            .name("rivet-reader".into())
            .spawn(move || {
                if let Err(e) = produce(&sink) {
                    // The consumer may be gone already; nothing else to tell.
                    let _ = sink.tx.send(Err(e));
                }
            })
            .expect("spawning a reader thread");
        BatchStream {
            schema,
            rx,
            cancelled,
            rows,
            finished: false,
        }
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// A flag that stops the producer when set, usable without holding the stream.
    pub fn cancel_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancelled)
    }

    /// Rows handed over so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Wait up to `timeout` for the next batch.
    pub fn poll(&mut self, timeout: Duration) -> Poll {
        if self.finished {
            return Poll::Done;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(batch)) => Poll::Batch(batch),
            Ok(Err(e)) => {
                self.finished = true;
                Poll::Failed(e)
            }
            Err(RecvTimeoutError::Timeout) => Poll::Pending,
            Err(RecvTimeoutError::Disconnected) => {
                self.finished = true;
                Poll::Done
            }
        }
    }

    /// Block until the next batch (for consumers that cannot poll).
    pub fn next_blocking(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            match self.poll(Duration::from_secs(3600)) {
                Poll::Batch(b) => return Ok(Some(b)),
                Poll::Failed(e) => return Err(e),
                Poll::Done => return Ok(None),
                Poll::Pending => {}
            }
        }
    }

    /// Ask the producer to stop at its next batch boundary.
    pub fn cancel(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.finished = true;
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}
