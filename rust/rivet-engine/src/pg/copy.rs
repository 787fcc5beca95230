//! Parsing a binary `COPY ... TO STDOUT` stream straight into column builders.

use std::io::Read;

use crate::error::{Error, Result};
use crate::pg::batch::{BatchLimits, PgBatchBuilder};
use crate::stream::BatchSink;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// A refillable window over the byte stream.
struct Window<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> Window<R> {
    fn new(reader: R) -> Self {
        Window {
            reader,
            buf: vec![0; 1 << 20],
            start: 0,
            end: 0,
        }
    }

    /// Make at least `n` unread bytes available.
    #[inline]
    fn ensure(&mut self, n: usize) -> Result<()> {
        if self.end - self.start >= n {
            return Ok(());
        }
        self.refill(n)
    }

    #[cold]
    fn refill(&mut self, n: usize) -> Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < n {
            self.buf.resize(n.next_power_of_two(), 0);
        }
        while self.end < n {
            let got = self
                .reader
                .read(&mut self.buf[self.end..])
                .map_err(|e| Error::ConnectionLost(format!("reading COPY data: {e}")))?;
            if got == 0 {
                return Err(Error::ConnectionLost("the COPY stream ended early".into()));
            }
            self.end += got;
        }
        Ok(())
    }

    #[inline]
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.buf[self.start..self.start + n];
        self.start += n;
        s
    }

    #[inline]
    fn i16(&mut self) -> Result<i16> {
        self.ensure(2)?;
        let b = self.take(2);
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    fn i32(&mut self) -> Result<i32> {
        self.ensure(4)?;
        let b = self.take(4);
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Decode a whole binary COPY stream, sending a batch whenever `limits` is reached.
pub fn read_copy<R: Read>(
    reader: R,
    builder: &mut PgBatchBuilder,
    limits: &BatchLimits,
    sink: &BatchSink,
) -> Result<()> {
    let mut w = Window::new(reader);
    w.ensure(19)?;
    if w.take(11) != SIGNATURE {
        return Err(Error::Io("not a binary COPY stream".into()));
    }
    let _flags = w.i32()?;
    let ext = usize::try_from(w.i32()?).map_err(|_| Error::Io("bad COPY header".into()))?;
    w.ensure(ext)?;
    w.take(ext);
    let width = builder.width();
    loop {
        let fields = w.i16()?;
        if fields == -1 {
            break;
        }
        if usize::try_from(fields).ok() != Some(width) {
            return Err(Error::Io(format!("COPY row has {fields} fields, expected {width}")));
        }
        for col in 0..width {
            let len = w.i32()?;
            if len < 0 {
                builder.append(col, None)?;
            } else {
                let len = len as usize;
                w.ensure(len)?;
                let value = w.take(len);
                builder.append(col, Some(value))?;
            }
        }
        builder.end_row();
        if builder.is_full(limits) {
            sink.send(builder.finish()?)?;
        }
    }
    if builder.rows() > 0 {
        sink.send(builder.finish()?)?;
    }
    Ok(())
}
