//! Decoding MySQL binary-protocol rows into Arrow builders, value by value, exactly.
//!
//! Over 500 lines because it is one builder per supported type, each short, kept
//! beside the others so the type map reads in one place.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    DurationMicrosecondBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder,
    UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_buffer::i256;
use arrow_schema::SchemaRef;

use crate::batch::{Fill, RowBatch};
use crate::decimal::DecimalInt;
use crate::error::{Error, Result};
use crate::mysql::types::{MyColumn, MyKind};
use crate::temporal::{days_from_civil, days_in_month};

/// One column's builder.
pub enum MyBuilder {
    /// BOOL
    Bool(BooleanBuilder, bool),
    /// TINYINT
    Int8(Int8Builder),
    /// SMALLINT, YEAR
    Int16(Int16Builder),
    /// INT
    Int32(Int32Builder),
    /// BIGINT
    Int64(Int64Builder),
    /// TINYINT UNSIGNED
    UInt8(UInt8Builder),
    /// SMALLINT UNSIGNED
    UInt16(UInt16Builder),
    /// INT UNSIGNED
    UInt32(UInt32Builder),
    /// BIGINT UNSIGNED, BIT(n)
    UInt64(UInt64Builder, bool),
    /// FLOAT
    Float32(Float32Builder),
    /// DOUBLE
    Float64(Float64Builder),
    /// DECIMAL up to 38 digits
    Decimal128(Decimal128Builder, i8, i128),
    /// DECIMAL of 39 to 65 digits
    Decimal256(Decimal256Builder, i8, i256),
    /// Text (checked as UTF-8 once per batch)
    Text(BinaryBuilder),
    /// Bytes
    Binary(BinaryBuilder),
    /// DATE
    Date(Date32Builder),
    /// DATETIME / TIMESTAMP
    Timestamp(TimestampMicrosecondBuilder),
    /// TIME
    Time(DurationMicrosecondBuilder),
}

impl MyBuilder {
    /// A builder for `kind`. `bits` marks BOOL and BIGINT columns that travel as BIT strings.
    pub fn new(kind: MyKind, rows: usize, bits: bool) -> Self {
        match kind {
            MyKind::Bool => MyBuilder::Bool(BooleanBuilder::with_capacity(rows), bits),
            MyKind::Int8 => MyBuilder::Int8(Int8Builder::with_capacity(rows)),
            MyKind::Int16 => MyBuilder::Int16(Int16Builder::with_capacity(rows)),
            MyKind::Int32 => MyBuilder::Int32(Int32Builder::with_capacity(rows)),
            MyKind::Int64 => MyBuilder::Int64(Int64Builder::with_capacity(rows)),
            MyKind::UInt8 => MyBuilder::UInt8(UInt8Builder::with_capacity(rows)),
            MyKind::UInt16 => MyBuilder::UInt16(UInt16Builder::with_capacity(rows)),
            MyKind::UInt32 => MyBuilder::UInt32(UInt32Builder::with_capacity(rows)),
            MyKind::UInt64 => MyBuilder::UInt64(UInt64Builder::with_capacity(rows), false),
            MyKind::Bits => MyBuilder::UInt64(UInt64Builder::with_capacity(rows), true),
            MyKind::Float32 => MyBuilder::Float32(Float32Builder::with_capacity(rows)),
            MyKind::Float64 => MyBuilder::Float64(Float64Builder::with_capacity(rows)),
            MyKind::Decimal(p, s) if p <= 38 => MyBuilder::Decimal128(
                Decimal128Builder::with_capacity(rows)
                    .with_precision_and_scale(p, s)
                    .expect("validated precision"),
                s,
                i128::pow10(u32::from(p)).unwrap_or(i128::MAX),
            ),
            MyKind::Decimal(p, s) => MyBuilder::Decimal256(
                Decimal256Builder::with_capacity(rows)
                    .with_precision_and_scale(p, s)
                    .expect("validated precision"),
                s,
                i256::pow10(u32::from(p)).unwrap_or(i256::MAX),
            ),
            MyKind::Text => MyBuilder::Text(BinaryBuilder::with_capacity(rows, rows * 16)),
            MyKind::Binary => MyBuilder::Binary(BinaryBuilder::with_capacity(rows, rows * 16)),
            MyKind::Date => MyBuilder::Date(Date32Builder::with_capacity(rows)),
            MyKind::DateTime => {
                MyBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows))
            }
            MyKind::Timestamp => MyBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
            MyKind::Time => MyBuilder::Time(DurationMicrosecondBuilder::with_capacity(rows)),
        }
    }

    fn append_null(&mut self) {
        match self {
            MyBuilder::Bool(b, _) => b.append_null(),
            MyBuilder::Int8(b) => b.append_null(),
            MyBuilder::Int16(b) => b.append_null(),
            MyBuilder::Int32(b) => b.append_null(),
            MyBuilder::Int64(b) => b.append_null(),
            MyBuilder::UInt8(b) => b.append_null(),
            MyBuilder::UInt16(b) => b.append_null(),
            MyBuilder::UInt32(b) => b.append_null(),
            MyBuilder::UInt64(b, _) => b.append_null(),
            MyBuilder::Float32(b) => b.append_null(),
            MyBuilder::Float64(b) => b.append_null(),
            MyBuilder::Decimal128(b, ..) => b.append_null(),
            MyBuilder::Decimal256(b, ..) => b.append_null(),
            MyBuilder::Text(b) | MyBuilder::Binary(b) => b.append_null(),
            MyBuilder::Date(b) => b.append_null(),
            MyBuilder::Timestamp(b) => b.append_null(),
            MyBuilder::Time(b) => b.append_null(),
        }
    }

    /// Read one non-NULL value at `data[*at..]`, advancing `at`.
    fn append(&mut self, data: &[u8], at: &mut usize) -> std::result::Result<(), String> {
        match self {
            MyBuilder::Bool(b, bits) => {
                let v = if *bits {
                    lenenc(data, at)?.first().copied().unwrap_or(0)
                } else {
                    take::<1>(data, at)?[0]
                };
                match v {
                    0 => b.append_value(false),
                    1 => b.append_value(true),
                    other => {
                        return Err(format!(
                            "value {other} in a TINYINT(1) column is not a boolean (0 or 1); read it as a \
                             number with CAST(col AS SIGNED) in the query"
                        ));
                    }
                }
            }
            MyBuilder::Int8(b) => b.append_value(i8::from_le_bytes(take(data, at)?)),
            MyBuilder::Int16(b) => b.append_value(i16::from_le_bytes(take(data, at)?)),
            MyBuilder::Int32(b) => b.append_value(i32::from_le_bytes(take(data, at)?)),
            MyBuilder::Int64(b) => b.append_value(i64::from_le_bytes(take(data, at)?)),
            MyBuilder::UInt8(b) => b.append_value(u8::from_le_bytes(take(data, at)?)),
            MyBuilder::UInt16(b) => b.append_value(u16::from_le_bytes(take(data, at)?)),
            MyBuilder::UInt32(b) => b.append_value(u32::from_le_bytes(take(data, at)?)),
            MyBuilder::UInt64(b, false) => b.append_value(u64::from_le_bytes(take(data, at)?)),
            MyBuilder::UInt64(b, true) => {
                let raw = lenenc(data, at)?;
                if raw.len() > 8 {
                    return Err("BIT value wider than 64 bits".into());
                }
                b.append_value(
                    raw.iter()
                        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte)),
                );
            }
            MyBuilder::Float32(b) => b.append_value(f32::from_le_bytes(take(data, at)?)),
            MyBuilder::Float64(b) => b.append_value(f64::from_le_bytes(take(data, at)?)),
            MyBuilder::Decimal128(b, scale, bound) => {
                b.append_value(parse_decimal(lenenc(data, at)?, *scale, *bound)?);
            }
            MyBuilder::Decimal256(b, scale, bound) => {
                b.append_value(parse_decimal(lenenc(data, at)?, *scale, *bound)?);
            }
            MyBuilder::Text(b) | MyBuilder::Binary(b) => b.append_value(lenenc(data, at)?),
            MyBuilder::Date(b) => {
                let (days, _) = datetime(data, at)?;
                b.append_value(i32::try_from(days).map_err(|_| "date out of range")?);
            }
            MyBuilder::Timestamp(b) => {
                let (days, micros) = datetime(data, at)?;
                b.append_value(days * 86_400_000_000 + micros);
            }
            MyBuilder::Time(b) => b.append_value(time(data, at)?),
        }
        Ok(())
    }

    fn finish(&mut self) -> std::result::Result<ArrayRef, String> {
        Ok(match self {
            MyBuilder::Bool(b, _) => Arc::new(b.finish()),
            MyBuilder::Int8(b) => Arc::new(b.finish()),
            MyBuilder::Int16(b) => Arc::new(b.finish()),
            MyBuilder::Int32(b) => Arc::new(b.finish()),
            MyBuilder::Int64(b) => Arc::new(b.finish()),
            MyBuilder::UInt8(b) => Arc::new(b.finish()),
            MyBuilder::UInt16(b) => Arc::new(b.finish()),
            MyBuilder::UInt32(b) => Arc::new(b.finish()),
            MyBuilder::UInt64(b, _) => Arc::new(b.finish()),
            MyBuilder::Float32(b) => Arc::new(b.finish()),
            MyBuilder::Float64(b) => Arc::new(b.finish()),
            MyBuilder::Decimal128(b, ..) => Arc::new(b.finish()),
            MyBuilder::Decimal256(b, ..) => Arc::new(b.finish()),
            MyBuilder::Text(b) => Arc::new(
                StringArray::try_from_binary(b.finish())
                    .map_err(|e| format!("invalid UTF-8 in a text value: {e}"))?,
            ),
            MyBuilder::Binary(b) => Arc::new(b.finish()),
            MyBuilder::Date(b) => Arc::new(b.finish()),
            MyBuilder::Timestamp(b) => Arc::new(b.finish()),
            MyBuilder::Time(b) => Arc::new(b.finish()),
        })
    }
}

fn take<const N: usize>(data: &[u8], at: &mut usize) -> std::result::Result<[u8; N], String> {
    let v: [u8; N] = data
        .get(*at..*at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or("row ends early")?;
    *at += N;
    Ok(v)
}

fn lenenc<'a>(data: &'a [u8], at: &mut usize) -> std::result::Result<&'a [u8], String> {
    let first = *data.get(*at).ok_or("row ends early")?;
    *at += 1;
    let len = match first {
        0xfc => u64::from(u16::from_le_bytes(take(data, at)?)),
        0xfd => {
            let b: [u8; 3] = take(data, at)?;
            u64::from(u32::from_le_bytes([b[0], b[1], b[2], 0]))
        }
        0xfe => u64::from_le_bytes(take(data, at)?),
        v => u64::from(v),
    };
    let len = usize::try_from(len).map_err(|_| "value too long")?;
    let v = data.get(*at..*at + len).ok_or("row ends early")?;
    *at += len;
    Ok(v)
}

/// A binary DATE/DATETIME/TIMESTAMP: (days since 1970, microseconds into the day).
fn datetime(data: &[u8], at: &mut usize) -> std::result::Result<(i64, i64), String> {
    let len = usize::from(take::<1>(data, at)?[0]);
    let v = data.get(*at..*at + len).ok_or("row ends early")?;
    *at += len;
    if len == 0 {
        return Err(zero_date("0000-00-00"));
    }
    if len < 4 {
        return Err("malformed date".into());
    }
    let (y, m, d) = (
        i64::from(u16::from_le_bytes([v[0], v[1]])),
        i64::from(v[2]),
        i64::from(v[3]),
    );
    if m == 0 || d == 0 || m > 12 || d > days_in_month(y, m) {
        return Err(zero_date(&format!("{y:04}-{m:02}-{d:02}")));
    }
    let mut micros = 0;
    if len >= 7 {
        micros = ((i64::from(v[4]) * 60 + i64::from(v[5])) * 60 + i64::from(v[6])) * 1_000_000;
    }
    if len >= 11 {
        micros += i64::from(u32::from_le_bytes([v[7], v[8], v[9], v[10]]));
    }
    Ok((days_from_civil(y, m, d), micros))
}

fn zero_date(text: &str) -> String {
    format!(
        "zero or partial date '{text}' has no calendar value; filter it out, or map it in SQL \
         (e.g. NULLIF(col, '0000-00-00')), or set columns: {{col: text}}"
    )
}

/// A binary TIME: signed microseconds (it may be negative or exceed 24 hours).
fn time(data: &[u8], at: &mut usize) -> std::result::Result<i64, String> {
    let len = usize::from(take::<1>(data, at)?[0]);
    let v = data.get(*at..*at + len).ok_or("row ends early")?;
    *at += len;
    if len == 0 {
        return Ok(0);
    }
    if len < 8 {
        return Err("malformed time".into());
    }
    let days = i64::from(u32::from_le_bytes([v[1], v[2], v[3], v[4]]));
    let seconds = ((days * 24 + i64::from(v[5])) * 60 + i64::from(v[6])) * 60 + i64::from(v[7]);
    let micros = if len >= 12 {
        i64::from(u32::from_le_bytes([v[8], v[9], v[10], v[11]]))
    } else {
        0
    };
    // The days are a u32 from the wire (the server's range is 34 days): seconds fit an
    // i64, microseconds may not, so a hostile value is an error, not an overflow.
    let total = seconds
        .checked_mul(1_000_000)
        .and_then(|us| us.checked_add(micros))
        .ok_or("TIME out of range")?;
    Ok(if v[0] == 1 { -total } else { total })
}

/// Exact value of decimal text at `scale`, refusing (never rounding) what does not fit.
fn parse_decimal<T: DecimalInt>(
    text: &[u8],
    scale: i8,
    bound: T,
) -> std::result::Result<T, String> {
    let show = || String::from_utf8_lossy(text).into_owned();
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let excess = || {
        format!(
            "value {} has more fractional digits than the column's scale (it is never rounded)",
            show()
        )
    };
    let mut acc = T::ZERO;
    let mut frac: i32 = -1;
    for &c in digits {
        match c {
            // Digits past the scale are checked, not accumulated: a wide DECIMAL read as
            // a narrower decimal has zeros there that would overflow the integer.
            b'0'..=b'9' if frac >= 0 && frac >= i32::from(scale) => {
                if c != b'0' {
                    return Err(excess());
                }
            }
            b'0'..=b'9' => {
                acc = acc
                    .push_decimal(c - b'0')
                    .ok_or_else(|| overflow(&show()))?;
                if frac >= 0 {
                    frac += 1;
                }
            }
            b'.' if frac < 0 => frac = 0,
            _ => return Err(format!("malformed decimal '{}'", show())),
        }
    }
    let frac = frac.max(0);
    let shift = i32::from(scale) - frac;
    let unscaled = if shift >= 0 {
        acc.mul_pow10(shift as u32)
            .ok_or_else(|| overflow(&show()))?
    } else {
        acc.div_pow10_exact((-shift) as u32).ok_or_else(excess)?
    };
    if unscaled >= bound {
        return Err(overflow(&show()));
    }
    Ok(if neg { unscaled.neg() } else { unscaled })
}

fn overflow(text: &str) -> String {
    format!("value {text} does not fit the column's decimal precision")
}

/// Rows accumulated into a bounded batch.
pub struct MyBatchBuilder {
    schema: SchemaRef,
    columns: Vec<MyColumn>,
    wire_bits: Vec<bool>,
    builders: Vec<MyBuilder>,
    fill: Fill,
}

impl MyBatchBuilder {
    /// A builder for `columns`; `wire_bits[i]` marks a column sent as a BIT string.
    pub fn new(
        schema: SchemaRef,
        columns: Vec<MyColumn>,
        wire_bits: Vec<bool>,
        capacity: usize,
    ) -> Self {
        let builders = columns
            .iter()
            .zip(&wire_bits)
            .map(|(c, bits)| MyBuilder::new(c.kind, capacity, *bits))
            .collect();
        MyBatchBuilder {
            schema,
            columns,
            wire_bits,
            builders,
            fill: Fill::default(),
        }
    }

    /// Decode one binary row (its payload, starting with the 0x00 header).
    #[inline]
    pub fn append_row(&mut self, payload: &[u8]) -> Result<()> {
        let n = self.builders.len();
        let bitmap_len = (n + 7 + 2) / 8;
        let bitmap = payload
            .get(1..1 + bitmap_len)
            .ok_or_else(|| Error::ConnectionLost("malformed binary row".into()))?;
        let mut at = 1 + bitmap_len;
        for (i, builder) in self.builders.iter_mut().enumerate() {
            let bit = i + 2;
            if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
                builder.append_null();
            } else {
                builder
                    .append(payload, &mut at)
                    .map_err(|m| Error::decode(&self.columns[i].name, m))?;
            }
        }
        self.fill.rows += 1;
        self.fill.bytes += payload.len();
        Ok(())
    }
}

impl RowBatch for MyBatchBuilder {
    fn fill(&self) -> Fill {
        self.fill
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let capacity = self.fill.rows + self.fill.rows / 8;
        let mut arrays = Vec::with_capacity(self.builders.len());
        for ((builder, column), bits) in self
            .builders
            .iter_mut()
            .zip(&self.columns)
            .zip(&self.wire_bits)
        {
            arrays.push(
                builder
                    .finish()
                    .map_err(|m| Error::decode(&column.name, m))?,
            );
            *builder = MyBuilder::new(column.kind, capacity, *bits);
        }
        self.fill = Fill::default();
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| Error::Io(format!("assembling a batch failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_from_text() {
        assert_eq!(
            parse_decimal::<i128>(b"123.45", 2, 10i128.pow(15)),
            Ok(12345)
        );
        assert_eq!(parse_decimal::<i128>(b"-0.10", 2, 10i128.pow(15)), Ok(-10));
        assert_eq!(parse_decimal::<i128>(b"7", 2, 10i128.pow(15)), Ok(700));
        assert!(
            parse_decimal::<i128>(b"1.005", 2, 10i128.pow(15))
                .unwrap_err()
                .contains("never rounded")
        );
        assert!(parse_decimal::<i128>(b"1000", 0, 1000).is_err());
        let wide = parse_decimal::<i256>(
            b"12345678901234567890123456789012345.123456789012345678901234567890",
            30,
            i256::from_i128(10).wrapping_pow(65),
        )
        .unwrap();
        assert_eq!(
            wide.to_string(),
            "12345678901234567890123456789012345123456789012345678901234567890"
        );
    }

    /// Found by the differential tests: a DECIMAL(42,22) read as decimal(35,1) refused
    /// `20000000000000000000.0000000000000000000000` as too wide, its zero decimals having
    /// overflowed the i128 on the way.
    #[test]
    fn zero_decimals_past_the_scale_do_not_overflow() {
        let text = format!("2{}.{}", "0".repeat(19), "0".repeat(22));
        assert_eq!(
            parse_decimal::<i128>(text.as_bytes(), 1, 10i128.pow(35)),
            Ok(2 * 10i128.pow(20))
        );
        assert_eq!(
            parse_decimal::<i64>(b"1.00000000000000000000", 0, 10),
            Ok(1)
        );
        assert!(
            parse_decimal::<i128>(b"1.000000000000000000000000000000000000000001", 2, 1000)
                .unwrap_err()
                .contains("never rounded")
        );
    }

    #[test]
    fn times_and_dates() {
        // TIME '-838:59:59.5': negative, 34 days 22:59:59, 500000 us.
        let t = [12u8, 1, 34, 0, 0, 0, 22, 59, 59, 0x20, 0xa1, 0x07, 0x00];
        let mut at = 0;
        assert_eq!(
            time(&t, &mut at),
            Ok(-((838 * 3600 + 59 * 60 + 59) * 1_000_000 + 500_000))
        );
        let d = [4u8, 0xe8, 0x07, 2, 29];
        let mut at = 0;
        assert_eq!(datetime(&d, &mut at), Ok((days_from_civil(2024, 2, 29), 0)));
        let zero = [0u8];
        let mut at = 0;
        assert!(datetime(&zero, &mut at).unwrap_err().contains("0000-00-00"));
    }
}
