//! Tuples in PostgreSQL's binary layout (a field count, then length-prefixed
//! values): the body of a DataRow, and each row of a binary COPY stream.

use crate::batch::{BatchLimits, flush, make_room};
use crate::error::{Error, Result};
use crate::pg::batch::PgBatchBuilder;
use crate::stream::BatchSink;

const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

fn malformed(what: &str) -> Error {
    Error::ConnectionLost(format!("malformed {what} from the server"))
}

/// Decode one complete tuple into the builder's next row.
#[inline]
pub fn decode_tuple(body: &[u8], builder: &mut PgBatchBuilder) -> Result<()> {
    let width = builder.width();
    match body.get(..2) {
        Some(&[a, b]) if usize::try_from(i16::from_be_bytes([a, b])).ok() == Some(width) => {}
        _ => return Err(malformed("row (wrong field count)")),
    }
    let mut at = 2;
    for col in 0..width {
        let len = match body.get(at..at + 4) {
            Some(&[a, b, c, d]) => i32::from_be_bytes([a, b, c, d]),
            _ => return Err(malformed("row")),
        };
        at += 4;
        if len < 0 {
            builder.append(col, None)?;
        } else {
            let end = at + len as usize;
            let value = body.get(at..end).ok_or_else(|| malformed("row"))?;
            builder.append(col, Some(value))?;
            at = end;
        }
    }
    builder.end_row();
    Ok(())
}

/// How far the scan of an incomplete tuple got: the fields whose bytes are all there, and
/// where the next one starts.
#[derive(Default)]
struct TupleScan {
    fields: usize,
    end: usize,
}

/// Length of the tuple at the start of `data` if all of it is there. The scan resumes
/// from `scan` (the same tuple, with fewer bytes, last time) and records how far it got,
/// so a tuple arriving in many small CopyData messages is scanned once, not once per
/// message: a server could otherwise make each byte cost 32767 steps.
fn complete_tuple_len(data: &[u8], scan: &mut TupleScan) -> Option<usize> {
    let count = i16::from_be_bytes([*data.first()?, *data.get(1)?]);
    let count = usize::try_from(count).unwrap_or(0);
    scan.end = scan.end.max(2);
    while scan.fields < count {
        let len = i32::from_be_bytes(data.get(scan.end..scan.end + 4)?.try_into().ok()?);
        let end = scan.end + 4 + usize::try_from(len).unwrap_or(0);
        if end > data.len() {
            return None;
        }
        scan.end = end;
        scan.fields += 1;
    }
    Some(std::mem::take(scan).end)
}

/// Parses a binary COPY stream whose CopyData messages may split tuples anywhere.
#[derive(Default)]
pub struct CopyDecoder {
    header_done: bool,
    finished: bool,
    carry: Vec<u8>,
    /// The scan of the incomplete tuple that starts `carry`.
    scan: TupleScan,
}

impl CopyDecoder {
    /// Feed one CopyData payload.
    pub fn feed(
        &mut self,
        data: &[u8],
        builder: &mut PgBatchBuilder,
        limits: &BatchLimits,
        sink: &BatchSink,
    ) -> Result<()> {
        if self.carry.is_empty() {
            let used = self.parse(data, builder, limits, sink)?;
            self.carry.extend_from_slice(&data[used..]);
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(data);
            let used = self.parse(&carry, builder, limits, sink)?;
            carry.drain(..used);
            self.carry = carry;
        }
        Ok(())
    }

    /// Check the stream ended cleanly and hand over the last rows.
    pub fn finish(&self, builder: &mut PgBatchBuilder, sink: &BatchSink) -> Result<()> {
        if !self.finished || !self.carry.is_empty() {
            return Err(malformed("COPY stream (it ended early)"));
        }
        flush(builder, sink)
    }

    /// Decode every whole unit at the start of `data`; returns the bytes used.
    fn parse(
        &mut self,
        data: &[u8],
        builder: &mut PgBatchBuilder,
        limits: &BatchLimits,
        sink: &BatchSink,
    ) -> Result<usize> {
        let mut at = 0;
        if !self.header_done {
            if data.len() < 19 {
                return Ok(0);
            }
            if &data[..11] != COPY_SIGNATURE {
                return Err(malformed("COPY header"));
            }
            let ext = usize::try_from(i32::from_be_bytes([data[15], data[16], data[17], data[18]]))
                .map_err(|_| malformed("COPY header"))?;
            if data.len() < 19 + ext {
                return Ok(0);
            }
            at = 19 + ext;
            self.header_done = true;
        }
        while at + 2 <= data.len() {
            if self.finished {
                return Err(malformed("COPY stream (data after the trailer)"));
            }
            if data[at..at + 2] == [0xff, 0xff] {
                self.finished = true;
                at += 2;
                continue;
            }
            let Some(len) = complete_tuple_len(&data[at..], &mut self.scan) else {
                break;
            };
            make_room(builder, len, limits, sink)?;
            decode_tuple(&data[at..at + len], builder)?;
            at += len;
        }
        Ok(at)
    }
}
