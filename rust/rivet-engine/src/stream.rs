//! A bounded stream of record batches produced on a background thread.
//!
//! The reader decodes the next batches while the consumer encodes and writes
//! the previous ones; the channel depth bounds memory. Dropping the stream
//! cancels the producer, which stops at its next batch boundary.
//!
//! The end of the data is explicit: a producer that returns normally sends an
//! [`EndOfData`] marker carrying the row count the server reported, checked here
//! against the rows handed over. A producer that fails, panics or vanishes ends
//! the stream with an error; a closed channel is never taken for the end.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::error::{Error, Result};
use crate::failpoint;

/// How a producer ended, as the server saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndOfData {
    /// Rows the server reported sending: PostgreSQL's `FETCH n` / `COPY n` command
    /// tags, the rows before MySQL's end-of-result packet, SQLite's steps.
    pub server_rows: u64,
    /// Rows a `COUNT(*)` found in the same snapshot, when the scan reconciles.
    pub expected_rows: Option<u64>,
}

enum Message {
    Batch(RecordBatch),
    End(EndOfData),
    Failed(Error),
}

/// Where a producer sends its batches.
pub struct BatchSink {
    tx: Sender<Message>,
    cancelled: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
}

impl BatchSink {
    /// Hand a batch to the consumer, waiting while the channel is full.
    /// Fails with [`Error::Interrupted`] once the consumer has gone away.
    pub fn send(&self, batch: RecordBatch) -> Result<()> {
        self.check()?;
        for point in ["reader_panic", "decode_error", "socket_closed"] {
            failpoint::check(point)?;
        }
        let n = batch.num_rows() as u64;
        self.tx
            .send(Message::Batch(batch))
            .map_err(|_| Error::Interrupted)?;
        self.rows.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Rows handed over so far (test producers report them as the server's count).
    #[cfg(test)]
    pub(crate) fn sent_rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
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

    /// The message that closes the stream: the end marker if every count agrees. A panic
    /// of the producer comes as its text.
    fn last_message(&self, outcome: std::result::Result<Result<EndOfData>, String>) -> Message {
        match outcome {
            Ok(Ok(end)) => {
                let sent = self.rows.load(Ordering::Relaxed);
                if end.server_rows == sent {
                    Message::End(end)
                } else {
                    Message::Failed(Error::Integrity(format!(
                        "the server reported {} row(s) but {sent} were decoded",
                        end.server_rows
                    )))
                }
            }
            Ok(Err(e)) => Message::Failed(e),
            Err(panic) => Message::Failed(Error::Internal(format!(
                "the reader thread panicked: {panic}"
            ))),
        }
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// What one poll of the stream returned.
pub enum Poll {
    /// The next batch.
    Batch(RecordBatch),
    /// The producer failed; the stream is finished.
    Failed(Error),
    /// All batches were delivered; the server's account of them.
    Done(EndOfData),
    /// Nothing arrived within the timeout; poll again.
    Pending,
}

/// The consumer side of a background read.
pub struct BatchStream {
    schema: SchemaRef,
    rx: Receiver<Message>,
    cancelled: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
    end: Option<EndOfData>,
    finished: bool,
}

impl BatchStream {
    /// Start `produce` on its own thread. `depth` batches may wait in the channel.
    /// `produce` returns the server's account of what it sent.
    pub fn spawn<F>(schema: SchemaRef, depth: usize, produce: F) -> Self
    where
        F: FnOnce(&BatchSink) -> Result<EndOfData> + Send + 'static,
    {
        let mut streams = Self::spawn_many(vec![schema], depth, move |sinks| {
            Ok(vec![produce(&sinks[0])?])
        });
        streams.pop().expect("one stream per schema")
    }

    /// Start `produce` on its own thread, feeding one stream per schema (a log read once for
    /// several tables); `depth` batches may wait in each channel. `produce` returns each
    /// stream's account, in order. The streams end together: a failure ends each with it, and
    /// a consumer that goes away stops the producer for all.
    pub fn spawn_many<F>(schemas: Vec<SchemaRef>, depth: usize, produce: F) -> Vec<Self>
    where
        F: FnOnce(&[BatchSink]) -> Result<Vec<EndOfData>> + Send + 'static,
    {
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut sinks = Vec::with_capacity(schemas.len());
        let mut streams = Vec::with_capacity(schemas.len());
        for schema in schemas {
            let (tx, rx) = bounded(depth.max(1));
            let rows = Arc::new(AtomicU64::new(0));
            sinks.push(BatchSink {
                tx,
                cancelled: Arc::clone(&cancelled),
                rows: Arc::clone(&rows),
            });
            streams.push(Self::from_parts(schema, rx, Arc::clone(&cancelled), rows));
        }
        thread::Builder::new()
            .name("rivet-reader".into())
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| produce(&sinks)))
                    .map_err(|panic| panic_text(panic.as_ref()).to_string());
                for (i, sink) in sinks.iter().enumerate() {
                    let own = match &outcome {
                        Ok(Ok(ends)) => Ok(ends.get(i).copied().ok_or_else(|| {
                            Error::Internal("the reader gave no account of a stream".into())
                        })),
                        Ok(Err(e)) => Ok(Err(e.clone())),
                        Err(panic) => Err(panic.clone()),
                    };
                    // The consumer may be gone already; nothing else to tell.
                    let _ = sink.tx.send(sink.last_message(own));
                }
            })
            .expect("spawning a reader thread");
        streams
    }

    fn from_parts(
        schema: SchemaRef,
        rx: Receiver<Message>,
        cancelled: Arc<AtomicBool>,
        rows: Arc<AtomicU64>,
    ) -> Self {
        BatchStream {
            schema,
            rx,
            cancelled,
            rows,
            end: None,
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

    /// The end-of-data marker, once the stream has delivered it.
    pub fn end(&self) -> Option<EndOfData> {
        self.end
    }

    /// Wait up to `timeout` for the next batch.
    pub fn poll(&mut self, timeout: Duration) -> Poll {
        if let Some(end) = self.end {
            return Poll::Done(end);
        }
        if self.finished {
            return Poll::Failed(Error::Interrupted);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(Message::Batch(batch)) => Poll::Batch(batch),
            Ok(Message::End(end)) => {
                self.finished = true;
                self.end = Some(end);
                Poll::Done(end)
            }
            Ok(Message::Failed(e)) => {
                self.finished = true;
                Poll::Failed(e)
            }
            Err(RecvTimeoutError::Timeout) => Poll::Pending,
            Err(RecvTimeoutError::Disconnected) => {
                self.finished = true;
                Poll::Failed(Error::Internal(
                    "the reader thread stopped without an end-of-data marker".into(),
                ))
            }
        }
    }

    /// Block until the next batch (for consumers that cannot poll).
    pub fn next_blocking(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            match self.poll(Duration::from_secs(3600)) {
                Poll::Batch(b) => return Ok(Some(b)),
                Poll::Failed(e) => return Err(e),
                Poll::Done(_) => return Ok(None),
                Poll::Pending => {}
            }
        }
    }

    /// Ask the producer to stop at its next batch boundary.
    pub fn cancel(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.finished = true;
    }

    /// Cancel, then wait up to `timeout` for the producer to finish (it may be asking
    /// the server to stop the statement), taking the batches it still sends.
    pub fn cancel_and_wait(&mut self, timeout: Duration) {
        self.cancel();
        let deadline = std::time::Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(Message::Batch(_)) => {}
                Ok(_) | Err(_) => return,
            }
        }
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int32Array;
    use arrow_schema::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]))
    }

    fn batch(n: i32) -> RecordBatch {
        RecordBatch::try_new(schema(), vec![Arc::new(Int32Array::from_iter_values(0..n))]).unwrap()
    }

    fn drain(mut s: BatchStream) -> (u64, Result<EndOfData>) {
        let mut rows = 0;
        loop {
            match s.poll(Duration::from_secs(10)) {
                Poll::Batch(b) => rows += b.num_rows() as u64,
                Poll::Done(end) => return (rows, Ok(end)),
                Poll::Failed(e) => return (rows, Err(e)),
                Poll::Pending => {}
            }
        }
    }

    #[test]
    fn ends_with_the_marker_when_counts_agree() {
        let s = BatchStream::spawn(schema(), 2, |sink| {
            sink.send(batch(3))?;
            sink.send(batch(4))?;
            Ok(EndOfData {
                server_rows: 7,
                expected_rows: None,
            })
        });
        let (rows, end) = drain(s);
        assert_eq!(rows, 7);
        assert_eq!(end.unwrap().server_rows, 7);
    }

    #[test]
    fn a_count_mismatch_is_an_error() {
        let s = BatchStream::spawn(schema(), 2, |sink| {
            sink.send(batch(3))?;
            Ok(EndOfData {
                server_rows: 5,
                expected_rows: None,
            })
        });
        assert!(matches!(drain(s).1, Err(Error::Integrity(_))));
    }

    #[test]
    fn a_panicking_producer_is_an_error_not_the_end() {
        let s = BatchStream::spawn(schema(), 2, |sink| {
            sink.send(batch(3))?;
            panic!("byte array offset overflow");
        });
        let (rows, end) = drain(s);
        assert_eq!(rows, 3);
        let message = end.unwrap_err().to_string();
        assert!(
            message.contains("panicked: byte array offset overflow"),
            "{message}"
        );
    }

    #[test]
    fn streams_fed_by_one_producer_each_get_their_own_batches_and_end() {
        let streams = BatchStream::spawn_many(vec![schema(), schema()], 1, |sinks| {
            sinks[0].send(batch(3))?;
            sinks[1].send(batch(1))?;
            sinks[0].send(batch(2))?;
            Ok(vec![
                EndOfData {
                    server_rows: 5,
                    expected_rows: None,
                },
                EndOfData {
                    server_rows: 1,
                    expected_rows: None,
                },
            ])
        });
        // Each drained on its own thread: a full channel of one must not stall the other.
        let handles: Vec<_> = streams
            .into_iter()
            .map(|s| thread::spawn(move || drain(s)))
            .collect();
        let ends: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ends[0].0, 5);
        assert_eq!(ends[0].1.as_ref().unwrap().server_rows, 5);
        assert_eq!(ends[1].0, 1);
        assert_eq!(ends[1].1.as_ref().unwrap().server_rows, 1);
    }

    #[test]
    fn a_failure_of_the_producer_ends_every_stream_with_it() {
        let streams = BatchStream::spawn_many(vec![schema(), schema()], 2, |sinks| {
            sinks[1].send(batch(2))?;
            Err(Error::ConnectionLost("reset by peer".into()))
        });
        for s in streams {
            let message = drain(s).1.unwrap_err().to_string();
            assert!(message.contains("reset by peer"), "{message}");
        }
    }

    #[test]
    fn a_closed_channel_without_the_marker_is_an_error() {
        let (tx, rx) = bounded::<Message>(1);
        drop(tx);
        let s = BatchStream::from_parts(
            schema(),
            rx,
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        assert!(matches!(drain(s).1, Err(Error::Internal(_))));
    }
}
