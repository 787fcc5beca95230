//! The MySQL/MariaDB binary log in ROW format: event framing (with CRC32 checksums), the
//! TABLE_MAP that describes a table's columns, and the row images of WRITE/UPDATE/DELETE_ROWS
//! events (v1, as MariaDB writes them, and v2, as MySQL 8 does).
//!
//! Values keep what the log says and nothing more: integers as their stored bytes (the log
//! does not say whether a column is unsigned; the source schema does), decimals and times
//! decoded exactly. Every length is checked against the bytes present, so a malformed event
//! is an error, never a panic or an allocation it asked for.

use crate::error::{Error, Result};
use crate::mysql::types::code as column;
use std::borrow::Cow;

/// Event types rivet reads (the others are passed over).
pub mod kind {
    /// A statement (DDL, `BEGIN` in statement form).
    pub const QUERY: u8 = 2;
    /// The log continues in another file.
    pub const ROTATE: u8 = 4;
    /// The log's format: the first event of every file.
    pub const FORMAT_DESCRIPTION: u8 = 15;
    /// A transaction committed.
    pub const XID: u8 = 16;
    /// A table's id and columns, before its row events.
    pub const TABLE_MAP: u8 = 19;
    /// Inserted rows (v1).
    pub const WRITE_ROWS_V1: u8 = 23;
    /// Updated rows (v1).
    pub const UPDATE_ROWS_V1: u8 = 24;
    /// Deleted rows (v1).
    pub const DELETE_ROWS_V1: u8 = 25;
    /// Inserted rows (v2).
    pub const WRITE_ROWS_V2: u8 = 30;
    /// Updated rows (v2).
    pub const UPDATE_ROWS_V2: u8 = 31;
    /// Deleted rows (v2).
    pub const DELETE_ROWS_V2: u8 = 32;
    /// MariaDB: a transaction's GTID.
    pub const MARIADB_GTID: u8 = 162;
}

/// The file magic before the first event.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

const HEADER: usize = 19;
/// The format event's flag for a log file still being written.
const IN_USE: u16 = 1;
const CHECKSUM: usize = 4;

fn malformed(what: &str) -> Error {
    Error::ConnectionLost(format!("malformed {what} in the binary log"))
}

/// A cursor over an event's bytes.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
        let end = end.ok_or_else(|| malformed("event (shorter than it says)"))?;
        let b = &self.data[self.at..end];
        self.at = end;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// `n` bytes little-endian.
    fn le(&mut self, n: usize) -> Result<u64> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// `n` bytes big-endian.
    fn be(&mut self, n: usize) -> Result<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A length-encoded integer.
    fn lenenc(&mut self) -> Result<u64> {
        match self.u8()? {
            n @ 0..=0xfa => Ok(u64::from(n)),
            0xfc => self.le(2),
            0xfd => self.le(3),
            0xfe => self.le(8),
            _ => Err(malformed("length")),
        }
    }

    /// A count of items each at least `each` bytes long, bounded by what is left.
    fn count(&mut self, each: usize) -> Result<usize> {
        let n = usize::try_from(self.lenenc()?).map_err(|_| malformed("count"))?;
        if n.saturating_mul(each) > self.rest().len() {
            return Err(malformed("count"));
        }
        Ok(n)
    }

    fn rest(&self) -> &'a [u8] {
        &self.data[self.at..]
    }
}

/// An event's common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// When the event was written (Unix seconds).
    pub timestamp: u32,
    /// Its type ([`kind`]).
    pub kind: u8,
    /// The server that wrote it.
    pub server_id: u32,
    /// Its size, header and checksum included.
    pub size: u32,
    /// Where the next event starts in the file.
    pub next_position: u32,
    /// Flags.
    pub flags: u16,
}

/// One event: its header and its body (without the checksum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The header.
    pub header: Header,
    /// The body.
    pub body: &'a [u8],
}

/// The event at the start of `data`, and its size; with `checksum`, its CRC32 is verified.
pub fn event(data: &[u8], checksum: bool) -> Result<(Event<'_>, usize)> {
    let mut b = Bytes { data, at: 0 };
    let header = Header {
        timestamp: u32::try_from(b.le(4)?).unwrap_or(0),
        kind: b.u8()?,
        server_id: u32::try_from(b.le(4)?).unwrap_or(0),
        size: u32::try_from(b.le(4)?).unwrap_or(0),
        next_position: u32::try_from(b.le(4)?).unwrap_or(0),
        flags: u16::try_from(b.le(2)?).unwrap_or(0),
    };
    let size = usize::try_from(header.size).map_err(|_| malformed("event size"))?;
    let trailer = if checksum { CHECKSUM } else { 0 };
    if size < HEADER + trailer || size > data.len() {
        return Err(malformed("event size"));
    }
    let body_end = size - trailer;
    if checksum {
        let stored = u32::from_le_bytes([
            data[body_end],
            data[body_end + 1],
            data[body_end + 2],
            data[body_end + 3],
        ]);
        let mut crc = crc32fast::Hasher::new();
        if header.kind == kind::FORMAT_DESCRIPTION && header.flags & IN_USE != 0 {
            // The server set "file in use" after checksumming the event; the sum is of it clear.
            let mut head = [0u8; HEADER];
            head.copy_from_slice(&data[..HEADER]);
            head[17] &= !1;
            crc.update(&head);
            crc.update(&data[HEADER..body_end]);
        } else {
            crc.update(&data[..body_end]);
        }
        if crc.finalize() != stored {
            return Err(Error::Integrity(format!(
                "an event of the binary log (type {}, ending at {}) fails its checksum",
                header.kind, header.next_position
            )));
        }
    }
    Ok((
        Event {
            header,
            body: &data[HEADER..body_end],
        },
        size,
    ))
}

/// Whether events after this FORMAT_DESCRIPTION carry a CRC32 (its body ends with the
/// algorithm byte and its own checksum).
pub fn format_has_checksum(body_with_checksum: &[u8]) -> bool {
    body_with_checksum
        .len()
        .checked_sub(CHECKSUM + 1)
        .is_some_and(|i| body_with_checksum[i] == 1)
}

/// A table's id and columns, as a TABLE_MAP event gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMap {
    /// The id its row events name it by (valid until the next TABLE_MAP of that table).
    pub table_id: u64,
    /// Database.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Each column's type (the protocol's type codes).
    pub types: Vec<u8>,
    /// Each column's metadata (lengths, precision, fractional digits), as [`TableMap::types`] needs it.
    pub meta: Vec<u16>,
    /// Each column may hold NULL.
    pub nullable: Vec<bool>,
    /// The columns' names, when the server logs them (`binlog_row_metadata=FULL`).
    pub names: Option<Vec<String>>,
}

/// A QUERY event's default database and its statement's text (borrowed when valid UTF-8).
pub fn query(body: &[u8]) -> Result<(Cow<'_, str>, Cow<'_, str>)> {
    let mut b = Bytes { data: body, at: 0 };
    let _thread = b.le(4)?;
    let _seconds = b.le(4)?;
    let database = usize::from(b.u8()?);
    let _error = b.le(2)?;
    let status = usize::try_from(b.le(2)?).map_err(|_| malformed("status"))?;
    b.take(status)?;
    let database = String::from_utf8_lossy(b.take(database)?);
    b.take(1)?; // its NUL
    Ok((database, String::from_utf8_lossy(b.rest())))
}

/// `sql` without its leading white space and comments (`/* */`, `-- `, `#`).
fn without_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else if rest.starts_with("-- ") || rest.starts_with("--\t") || rest.starts_with('#') {
            rest = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else {
            return rest;
        }
    }
}

/// The next word of `sql` and what follows it.
fn word(sql: &str) -> (&str, &str) {
    let sql = without_comments(sql);
    sql.split_once(char::is_whitespace)
        .map_or((sql, ""), |(w, r)| (w, r))
}

/// Whether `sql`, run in database `default`, truncates `schema`.`table` (or a partition of
/// it). Names are compared without regard to case: a false alarm stops a run, a miss would
/// not.
pub fn truncates(sql: &str, default: &str, schema: &str, table: &str) -> bool {
    let (first, rest) = word(sql);
    let name = if first.eq_ignore_ascii_case("truncate") {
        let (second, after) = word(rest);
        if second.eq_ignore_ascii_case("table") {
            after
        } else {
            rest
        }
    } else if first.eq_ignore_ascii_case("alter") {
        let (second, after) = word(rest);
        let partition = after.to_ascii_lowercase();
        if !second.eq_ignore_ascii_case("table") || !partition.contains("truncate partition") {
            return false;
        }
        after
    } else {
        return false;
    };
    let parts = identifier_parts(without_comments(name));
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match parts.as_slice() {
        [t] => same(default, schema) && same(t, table),
        [s, t] => same(s, schema) && same(t, table),
        _ => false,
    }
}

/// `a`, `` `a` ``, `"a"` (ANSI_QUOTES), `a.b`, `` `a`.`b` `` as their unquoted parts.
fn identifier_parts(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quote: Option<char> = None;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q && chars.peek() == Some(&q) => {
                chars.next();
                part.push(q);
            }
            (Some(q), c) if c == q => quote = None,
            (None, '`' | '"') => quote = Some(c),
            (None, '.') => parts.push(std::mem::take(&mut part)),
            (None, c) if c.is_whitespace() || c == ';' => break,
            (_, c) => part.push(c),
        }
    }
    parts.push(part);
    parts
}

/// The optional metadata field that names the columns.
const COLUMN_NAME: u8 = 4;

/// The column names among a TABLE_MAP's optional metadata (type, length, value fields).
fn column_names(b: &mut Bytes<'_>, n: usize) -> Result<Option<Vec<String>>> {
    while !b.rest().is_empty() {
        let field = b.u8()?;
        let len = usize::try_from(b.lenenc()?).map_err(|_| malformed("metadata field"))?;
        let mut value = Bytes {
            data: b.take(len)?,
            at: 0,
        };
        if field != COLUMN_NAME {
            continue;
        }
        let mut names = Vec::with_capacity(n);
        while !value.rest().is_empty() {
            let len = usize::try_from(value.lenenc()?).map_err(|_| malformed("column name"))?;
            let name = String::from_utf8(value.take(len)?.to_vec())
                .map_err(|_| malformed("column name"))?;
            names.push(name);
        }
        if names.len() != n {
            return Err(malformed("column names (not one per column)"));
        }
        return Ok(Some(names));
    }
    Ok(None)
}

fn meta_of(kind: u8, b: &mut Bytes<'_>) -> Result<u16> {
    Ok(match kind {
        column::FLOAT
        | column::DOUBLE
        | column::BLOB
        | column::TINY_BLOB
        | column::MEDIUM_BLOB
        | column::LONG_BLOB
        | column::GEOMETRY
        | column::JSON
        | column::TIMESTAMP2
        | column::DATETIME2
        | column::TIME2 => u16::from(b.u8()?),
        // A length; for BIT, the bits past whole bytes, then the whole bytes.
        column::VARCHAR | column::VAR_STRING | column::BIT => u16::try_from(b.le(2)?).unwrap_or(0),
        // (precision, scale), (real type, length): the first byte high.
        column::NEWDECIMAL | column::STRING | column::ENUM | column::SET => {
            u16::try_from(b.be(2)?).unwrap_or(0)
        }
        _ => 0,
    })
}

fn bitmap(b: &mut Bytes<'_>, n: usize) -> Result<Vec<bool>> {
    let bytes = b.take(n.div_ceil(8))?;
    Ok((0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect())
}

fn name(b: &mut Bytes<'_>) -> Result<String> {
    let len = usize::from(b.u8()?);
    let s = String::from_utf8(b.take(len)?.to_vec()).map_err(|_| malformed("name"))?;
    b.take(1)?; // its NUL
    Ok(s)
}

/// Read a TABLE_MAP event's body.
pub fn table_map(body: &[u8]) -> Result<TableMap> {
    let mut b = Bytes { data: body, at: 0 };
    let table_id = b.le(6)?;
    let _flags = b.le(2)?;
    let schema = name(&mut b)?;
    let table = name(&mut b)?;
    let n = b.count(1)?;
    let types = b.take(n)?.to_vec();
    let meta_len = usize::try_from(b.lenenc()?).map_err(|_| malformed("metadata"))?;
    let mut m = Bytes {
        data: b.take(meta_len)?,
        at: 0,
    };
    let meta = types
        .iter()
        .map(|t| meta_of(*t, &mut m))
        .collect::<Result<Vec<_>>>()?;
    let nullable = bitmap(&mut b, n)?;
    let names = column_names(&mut b, n)?;
    Ok(TableMap {
        table_id,
        schema,
        table,
        types,
        meta,
        nullable,
        names,
    })
}

/// One value of a row image.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// An integer's stored bytes, widened (the source schema says whether it is unsigned):
    /// `(bits, width in bytes)`.
    Int(u64, u8),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// DECIMAL, exactly, as text (`-1234567890123.45`).
    Decimal(String),
    /// Strings, binary strings, BLOB, TEXT, JSON (as its text in MariaDB), GEOMETRY.
    Bytes(&'a [u8]),
    /// DATE: year, month, day (zero parts as stored).
    Date(u16, u8, u8),
    /// DATETIME: year, month, day, hour, minute, second, microsecond.
    DateTime(u16, u8, u8, u8, u8, u8, u32),
    /// TIMESTAMP: Unix seconds and microseconds.
    Timestamp(u32, u32),
    /// TIME: negative, hours, minutes, seconds, microseconds.
    Time(bool, u16, u8, u8, u32),
    /// YEAR (0 for the zero year).
    Year(u16),
    /// BIT, as an unsigned integer.
    Bit(u64),
    /// ENUM: the value's 1-based index (0: the empty error value).
    Enum(u16),
    /// SET: a bit per member.
    Set(u64),
}

/// Digits each of the leftover byte counts of a binary decimal holds.
const DIGITS_BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

fn decimal(b: &mut Bytes<'_>, precision: usize, scale: usize) -> Result<String> {
    if precision == 0 || scale > precision || precision > 65 {
        return Err(malformed("decimal"));
    }
    let int_digits = precision - scale;
    let size = (int_digits / 9) * 4
        + DIGITS_BYTES[int_digits % 9]
        + (scale / 9) * 4
        + DIGITS_BYTES[scale % 9];
    let mut raw = b.take(size)?.to_vec();
    let negative = raw[0] & 0x80 == 0;
    raw[0] ^= 0x80;
    if negative {
        raw.iter_mut().for_each(|x| *x = !*x);
    }
    let mut r = Bytes { data: &raw, at: 0 };
    let mut int_part = String::new();
    let lead = int_digits % 9;
    if lead > 0 {
        int_part.push_str(&r.be(DIGITS_BYTES[lead])?.to_string());
    }
    for _ in 0..int_digits / 9 {
        let chunk = r.be(4)?;
        if int_part.is_empty() {
            int_part.push_str(&chunk.to_string());
        } else {
            int_part.push_str(&format!("{chunk:09}"));
        }
    }
    let int_part = int_part.trim_start_matches('0');
    let mut text = String::from(if negative { "-" } else { "" });
    text.push_str(if int_part.is_empty() { "0" } else { int_part });
    if scale > 0 {
        text.push('.');
        for _ in 0..scale / 9 {
            text.push_str(&format!("{:09}", r.be(4)?));
        }
        let tail = scale % 9;
        if tail > 0 {
            text.push_str(&format!(
                "{:0width$}",
                r.be(DIGITS_BYTES[tail])?,
                width = tail
            ));
        }
    }
    Ok(text)
}

/// The fractional seconds of a TIME2, DATETIME2 or TIMESTAMP2 with `fsp` digits, as
/// microseconds, and the bytes they take.
fn fraction(b: &mut Bytes<'_>, fsp: u16) -> Result<u32> {
    let bytes = usize::from(fsp).div_ceil(2);
    let raw = b.be(bytes)?;
    let scale = match bytes {
        0 => 0,
        1 => 10_000,
        2 => 100,
        _ => 1,
    };
    u32::try_from(raw * scale).map_err(|_| malformed("fraction"))
}

fn time2(b: &mut Bytes<'_>, fsp: u16) -> Result<Value<'static>> {
    const INT_OFFSET: i64 = 0x80_0000;
    let packed: i64 = match fsp {
        0 => (i64::try_from(b.be(3)?).unwrap_or(0) - INT_OFFSET) << 24,
        1..=4 => {
            let mut int = i64::try_from(b.be(3)?).unwrap_or(0) - INT_OFFSET;
            let (width, unit, span) = if fsp <= 2 {
                (1, 10_000, 0x100)
            } else {
                (2, 100, 0x1_0000)
            };
            let mut frac = i64::try_from(b.be(width)?).unwrap_or(0);
            if int < 0 && frac != 0 {
                int += 1;
                frac -= span;
            }
            (int << 24) + frac * unit
        }
        _ => i64::try_from(b.be(6)?).unwrap_or(0) - 0x8000_0000_0000,
    };
    let negative = packed < 0;
    let magnitude = packed.unsigned_abs();
    let micros = u32::try_from(magnitude % (1 << 24)).unwrap_or(0);
    let hms = magnitude >> 24;
    Ok(Value::Time(
        negative,
        u16::try_from((hms >> 12) & 0x3ff).unwrap_or(0),
        u8::try_from((hms >> 6) & 0x3f).unwrap_or(0),
        u8::try_from(hms & 0x3f).unwrap_or(0),
        micros,
    ))
}

fn value<'a>(b: &mut Bytes<'a>, kind: u8, meta: u16) -> Result<Value<'a>> {
    let low = |x: u16| u8::try_from(x & 0xff).unwrap_or(0);
    Ok(match kind {
        column::TINY => Value::Int(b.le(1)?, 1),
        column::SHORT => Value::Int(b.le(2)?, 2),
        column::INT24 => Value::Int(b.le(3)?, 3),
        column::LONG => Value::Int(b.le(4)?, 4),
        column::LONGLONG => Value::Int(b.le(8)?, 8),
        column::FLOAT => Value::Float(f32::from_bits(u32::try_from(b.le(4)?).unwrap_or(0))),
        column::DOUBLE => Value::Double(f64::from_bits(b.le(8)?)),
        column::NEWDECIMAL => {
            Value::Decimal(decimal(b, usize::from(meta >> 8), usize::from(low(meta)))?)
        }
        column::VARCHAR | column::VAR_STRING => {
            let prefix = if meta < 256 { 1 } else { 2 };
            let len = usize::try_from(b.le(prefix)?).map_err(|_| malformed("string"))?;
            Value::Bytes(b.take(len)?)
        }
        column::STRING | column::ENUM | column::SET => {
            let (real, length) = (u8::try_from(meta >> 8).unwrap_or(0), low(meta));
            match real {
                column::ENUM => Value::Enum(u16::try_from(b.le(usize::from(length))?).unwrap_or(0)),
                column::SET => Value::Set(b.le(usize::from(length))?),
                _ => {
                    // The length's high bits ride in the real type's unused bits.
                    let max = ((u16::from(real & 0x30) ^ 0x30) << 4) | u16::from(length);
                    let prefix = if max < 256 { 1 } else { 2 };
                    let len = usize::try_from(b.le(prefix)?).map_err(|_| malformed("string"))?;
                    Value::Bytes(b.take(len)?)
                }
            }
        }
        column::BLOB
        | column::TINY_BLOB
        | column::MEDIUM_BLOB
        | column::LONG_BLOB
        | column::GEOMETRY
        | column::JSON => {
            let prefix = usize::from(meta).clamp(1, 4);
            let len = usize::try_from(b.le(prefix)?).map_err(|_| malformed("blob"))?;
            Value::Bytes(b.take(len)?)
        }
        column::DATE => {
            let v = b.le(3)?;
            Value::Date(
                u16::try_from(v >> 9).unwrap_or(0),
                u8::try_from((v >> 5) & 15).unwrap_or(0),
                u8::try_from(v & 31).unwrap_or(0),
            )
        }
        column::YEAR => {
            let y = b.u8()?;
            Value::Year(if y == 0 { 0 } else { 1900 + u16::from(y) })
        }
        column::DATETIME2 => {
            let v = b.be(5)?.wrapping_sub(0x80_0000_0000);
            let ymd = v >> 17;
            let (ym, hms) = (ymd >> 5, v & 0x1_ffff);
            Value::DateTime(
                u16::try_from(ym / 13).unwrap_or(0),
                u8::try_from(ym % 13).unwrap_or(0),
                u8::try_from(ymd & 31).unwrap_or(0),
                u8::try_from(hms >> 12).unwrap_or(0),
                u8::try_from((hms >> 6) & 63).unwrap_or(0),
                u8::try_from(hms & 63).unwrap_or(0),
                fraction(b, meta)?,
            )
        }
        column::TIMESTAMP2 => {
            let seconds = u32::try_from(b.be(4)?).unwrap_or(0);
            Value::Timestamp(seconds, fraction(b, meta)?)
        }
        column::TIME2 => time2(b, meta)?,
        column::BIT => {
            let bytes = usize::from(meta >> 8) + usize::from(low(meta) > 0);
            Value::Bit(b.be(bytes)?)
        }
        other => return Err(malformed(&format!("value of column type {other}"))),
    })
}

/// A row image: each column's value, or None where the image does not carry the column
/// (a minimal row image).
pub type Image<'a> = Vec<Option<Value<'a>>>;

/// The row images of a WRITE/UPDATE/DELETE_ROWS event.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows<'a> {
    /// The table ([`TableMap::table_id`]).
    pub table_id: u64,
    /// Each row: the image before (UPDATE, DELETE) and after (WRITE, UPDATE).
    pub rows: Vec<(Option<Image<'a>>, Option<Image<'a>>)>,
}

/// Decode one row image into `values` (cleared first): each column's value, or None where
/// the image does not carry it. `present` is the event's column bitmap.
fn image_into<'a>(
    b: &mut Bytes<'a>,
    map: &TableMap,
    present: &[bool],
    carried: usize,
    values: &mut Image<'a>,
) -> Result<()> {
    // The NULL bitmap has a bit per carried column, read in place.
    let nulls = b.take(carried.div_ceil(8))?;
    values.clear();
    let mut n = 0;
    for (i, here) in present.iter().enumerate() {
        if !here {
            values.push(None);
            continue;
        }
        let value = if nulls[n / 8] & (1 << (n % 8)) != 0 {
            Value::Null
        } else {
            value(b, map.types[i], map.meta[i])?
        };
        n += 1;
        values.push(Some(value));
    }
    Ok(())
}

/// Hand each row of a row event's body (`kind` its type, `map` its table's) to `each`, as
/// (image before, image after): before for UPDATE and DELETE, after for WRITE and UPDATE.
/// The images are decoded into two buffers reused from row to row.
pub fn each_row<'a>(
    kind: u8,
    body: &'a [u8],
    map: &TableMap,
    mut each: impl FnMut(Option<&Image<'a>>, Option<&Image<'a>>) -> Result<()>,
) -> Result<()> {
    let mut b = Bytes { data: body, at: 0 };
    let _table_id = b.le(6)?;
    let _flags = b.le(2)?;
    let v2 = matches!(
        kind,
        self::kind::WRITE_ROWS_V2 | self::kind::UPDATE_ROWS_V2 | self::kind::DELETE_ROWS_V2
    );
    if v2 {
        let extra = usize::try_from(b.le(2)?).map_err(|_| malformed("extra data"))?;
        b.take(extra.saturating_sub(2))?;
    }
    let width = usize::try_from(b.lenenc()?).map_err(|_| malformed("width"))?;
    if width != map.types.len() {
        return Err(malformed("row event (its width is not its table's)"));
    }
    let before = bitmap(&mut b, width)?;
    let (has_before, has_after) = match kind {
        self::kind::WRITE_ROWS_V1 | self::kind::WRITE_ROWS_V2 => (false, true),
        self::kind::DELETE_ROWS_V1 | self::kind::DELETE_ROWS_V2 => (true, false),
        self::kind::UPDATE_ROWS_V1 | self::kind::UPDATE_ROWS_V2 => (true, true),
        _ => return Err(malformed("row event type")),
    };
    let after = if has_before && has_after {
        bitmap(&mut b, width)?
    } else {
        before.clone()
    };
    let (carried_before, carried_after) = (
        before.iter().filter(|p| **p).count(),
        after.iter().filter(|p| **p).count(),
    );
    let (mut old, mut new) = (Vec::with_capacity(width), Vec::with_capacity(width));
    while !b.rest().is_empty() {
        let start = b.at;
        if has_before {
            image_into(&mut b, map, &before, carried_before, &mut old)?;
        }
        if has_after {
            image_into(&mut b, map, &after, carried_after, &mut new)?;
        }
        if b.at == start {
            // A row of no columns takes no bytes: the rest would be read as rows forever.
            return Err(malformed("row event (a row that carries no column)"));
        }
        each(has_before.then_some(&old), has_after.then_some(&new))?;
    }
    Ok(())
}

/// Read a row event's body (`kind` its type) against its table's `map`.
pub fn rows<'a>(kind: u8, body: &'a [u8], map: &TableMap) -> Result<Rows<'a>> {
    let table_id = Bytes { data: body, at: 0 }.le(6)?;
    let mut rows = Vec::new();
    each_row(kind, body, map, |old, new| {
        rows.push((old.cloned(), new.cloned()));
        Ok(())
    })?;
    Ok(Rows { table_id, rows })
}

#[cfg(test)]
mod tests;
